"""`reelhouse train`: fit the two Spark MLlib ALS models and publish what analysts query.

Two models, each chosen by measurement (README, Accuracy):
- the rating model, explicit bias-centred ALS: the global mean and damped movie and user
  biases are computed in SQL and ALS learns the residuals; an estimate is global mean + user
  bias + movie bias + user factors . movie factors. It gives predictions and the RMSE.
- the list model, implicit-feedback ALS by default (als.LIST_DEFAULTS): ratings as confidence
  (Hu, Koren, Volinsky 2008). Explicit ALS is right for rating estimates and wrong for top-N
  lists; implicit ALS's lists rank far better.

One training run, read top to bottom in `train`:
1. check the parameters (a bad value fails here, before any table is touched), then put back
   any output table that a killed earlier run left half-written (`recover_interrupted`);
2. read the inputs at fixed Delta versions, recorded on the run, so a rebuild in another
   process cannot change the data halfway through;
3. evaluation: both models fit on the train rows only; predictions of the test rows, and the
   list model's top N for every user with a test rating (test_recommendations, train items
   excluded), which ranking_metrics scores; the other model's lists go to
   candidate_recommendations;
4. serving: the list model refit on every rating with the same settings; recommendations
   (never a movie the user rated anywhere), similar_movies and the factors come from it;
5. write every output table, one Delta commit each, and save both models;
6. write the model_runs row last, with the Delta version of every table the run wrote.
If anything in 2-6 fails, every output table goes back to its version before the run, so the
previous run's tables stay exactly as they were. A run killed outright (no chance to clean
up) is repaired by the next `train`, from the versions on the latest model_runs row.

The ALS maths live in als, the lists in top_lists, the run's record and recovery in
model_runs; `reelhouse tune` (tune) searches the parameters.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime

from pipelines import (
    als,
    delta_log,
    model_runs,
    naming,
    progress,
    registration,
    run_ids,
    sql_project,
    top_lists,
    writes,
)
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

DEFAULT_LIST_CHOICE = ("the default, chosen by validation NDCG@10 on ml-latest-small (README, "
                       "Accuracy); `reelhouse tune --objective ranking` then `reelhouse "
                       "train --params best` choose on this data")


def train(spark, settings: Settings, params: als.TrainParams | None = None,
          list_params: als.TrainParams | None = None, list_choice: str = DEFAULT_LIST_CHOICE
          ) -> str:
    """Fit, publish every output table, record the run; returns its run_id. `params`: the
    rating model (explicit); `list_params`: the list model (als.LIST_DEFAULTS unless given; the
    rating model's own params make the rating model serve the lists too); `list_choice`: why
    that list model, printed and recorded."""
    params = (params or als.TrainParams()).validated()
    if params.implicit:
        raise ReelhouseError("The rating model is explicit (it predicts ratings): give implicit "
                             "settings to the list model (--list-model implicit).")
    list_params = (list_params or als.list_model_params(params)).validated()
    registration.register_warehouse(spark, settings)  # the inputs are read by name
    versions = model_runs.input_versions(spark, settings)
    before = model_runs.recover_interrupted(spark, settings)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    run_id = run_ids.new_run_id(started_at)
    model_path = f"{settings.warehouse}/_models/{run_id}"
    cached: list = []
    try:
        with model_runs.run_checkpoints(spark, settings, run_id):
            result = _train_and_publish(spark, settings, params, list_params, list_choice,
                                        versions, run_id, started_at, clock, model_path,
                                        cached)
    except BaseException:
        model_runs.rollback(spark, settings, before, model_path)
        raise
    finally:
        for df in cached:
            df.unpersist()
    metrics, num_test, num_users = result
    progress.say(f"run {run_id}: test RMSE {metrics.rmse:.4f} on {metrics.num_rows:,} rows "
                 f"({num_test - metrics.num_rows:,} cold-start rows left out); lists for "
                 f"{num_users:,} users served by {als.list_model_name(list_params)} refit on "
                 f"every rating: {list_choice}")
    return run_id


def _train_and_publish(spark, settings: Settings, params: als.TrainParams,
                       list_params: als.TrainParams, list_choice: str, versions: dict,
                       run_id: str, started_at: datetime, clock: float, model_path: str,
                       cached: list):
    """Steps 2-6 of the module docstring; returns (metrics row, test rows, served users)."""
    split = model_runs.read_input(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating") \
        .cache()
    test_rows = split.where("split = 'test'").select("user_id", "movie_id", "rating")
    all_rows = model_runs.read_input(spark, settings, "ratings", versions) \
        .select("user_id", "movie_id", "rating").cache()
    cached += [train_rows, all_rows]
    scale = als.rating_scale(all_rows)

    # Evaluation: both models fit on train only, scored on the test rows.
    ratings_fit = als.fit_model(spark, settings, train_rows, params, run_id,
                                "rating model on train", cached)
    predictions = als.score_pairs(test_rows, ratings_fit.user_factors,
                                  ratings_fit.movie_factors, ratings_fit.base.global_mean,
                                  scale).selectExpr(
        f"{naming.sql_string(run_id)} as run_id", "user_id", "movie_id", "rating",
        "prediction").cache()
    cached.append(predictions)
    lists_fit = (ratings_fit if list_params == params else
                 als.fit_model(spark, settings, train_rows, list_params, run_id,
                               "list model on train", cached))
    evaluated_users = test_rows.select("user_id").distinct()

    # Serving: the list model refit on every rating (every split), with the same settings.
    serving_fit = als.fit_model(spark, settings, all_rows, list_params, run_id,
                                "list model on every rating", cached)
    results: dict = {}

    def lists(fit: als.Fit, rated, users):
        return top_lists.top_lists(spark, fit, rated, users, scale, run_id)

    def recommendations():
        results["recommendations"] = lists(serving_fit, all_rows, None).cache()
        cached.append(results["recommendations"])
        return results["recommendations"]

    def candidate_lists():  # the rating model's lists, when another model serves
        if lists_fit is ratings_fit:
            return naming.literal_rows(spark, top_lists.LIST_COLUMNS, [])
        return lists(ratings_fit, train_rows, evaluated_users)

    # table: its rows, or a function computing them; descriptions come from the YAML
    # (sql/reports/_reports.yml, sources: train)
    outputs_to_write = {
        "user_factors": serving_fit.user_factors,
        "movie_factors": serving_fit.movie_factors,
        "rating_user_factors": ratings_fit.user_factors,
        "rating_movie_factors": ratings_fit.movie_factors,
        "predictions": predictions,
        "test_recommendations": lambda: lists(lists_fit, train_rows, evaluated_users),
        "candidate_recommendations": candidate_lists,
        "recommendations": recommendations,
        "similar_movies": lambda: top_lists.similar_movies(
            spark, serving_fit.movie_factors, list_params.rank, list_params.top_n,
            list_params.min_movie_ratings)
        .selectExpr(f"{naming.sql_string(run_id)} as run_id", "*"),
    }

    def write(table: str) -> int:
        rows = outputs_to_write[table]
        return _publish(spark, settings, rows() if callable(rows) else rows, table)

    # The tables are independent: written side by side, each in its own Delta commit,
    # so Spark's scheduling gaps and commit latency of one overlap the work of another.
    with ThreadPoolExecutor(max_workers=max(1, settings.threads),
                            thread_name_prefix="reelhouse-publish") as pool:
        futures = {table: pool.submit(write, table) for table in model_runs.OUTPUT_TABLES}
    outputs = {table: future.result() for table, future in futures.items()}
    recommendations = results["recommendations"]

    rating_model(spark, ratings_fit).write().overwrite().save(f"{model_path}/ratings")
    serving_fit.model.write().overwrite().save(f"{model_path}/lists")
    metrics = predictions.selectExpr(*als.METRICS).first()
    num_test = test_rows.count()
    num_users = recommendations.select("user_id").distinct().count()
    row = (run_id, started_at, datetime.now(UTC), json.dumps(asdict(params), sort_keys=True),
           ratings_fit.base.global_mean, scale[0], scale[1], ratings_fit.rows, num_test,
           metrics.num_rows, num_test - metrics.num_rows, num_users, ratings_fit.seconds,
           time.monotonic() - clock, metrics.rmse, metrics.mae, versions, outputs, model_path,
           als.list_model_name(list_params), json.dumps(asdict(list_params), sort_keys=True),
           serving_fit.base.global_mean, serving_fit.rows, serving_fit.seconds, list_choice)
    model_runs.record_run(spark, settings, row)  # last: the run is finished once it is there
    return metrics, num_test, num_users


def rating_model(spark, fit: als.Fit):
    """The rating model as one MLlib ALSModel whose transform() gives the full estimate
    mu + b_user + b_movie + p.q (not clipped): the factors extended by (1, b_user + mu) for
    users and (b_movie, 1) for movies, so the saved model needs no side tables."""
    mean = repr(fit.base.global_mean)
    users = fit.user_factors.selectExpr(
        "id", f"concat(factors, array(cast(1.0 as float), cast(bias + {mean} as float))) "
        "as features")
    movies = fit.movie_factors.selectExpr(
        "id", "concat(factors, array(cast(bias as float), cast(1.0 as float))) as features")
    return als.factor_model(spark, fit.params.rank + 2, users, movies, "user_id", "movie_id")


def _publish(spark, settings: Settings, df, table: str) -> int:
    """Replace an output table in one Delta commit, with its YAML docs as comments; returns
    the version written."""
    spark.sparkContext.setJobDescription(f"write {naming.qualified(settings, table)}")
    try:
        with progress.step(f"write {naming.qualified(settings, table)}") as step:
            writes.replace_table(spark, settings, df, table,
                                 *sql_project.table_docs(settings, table))
            rows = delta_log.rows_in_last_commit(spark, settings, table)
            step["result"] = f"{rows:,} rows" if rows is not None else ""
    finally:
        spark.sparkContext.setJobDescription(None)
    return delta_log.current_version(spark, settings, table)
