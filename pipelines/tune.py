"""`reelhouse tune`: fit every point of a grid on the train rows less a validation share,
score each on that share (validation RMSE for the rating model, NDCG@10 of its lists for the
list model), record every trial in model_trials, and give `train --params best` the best."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from pipelines import (
    als,
    delta_log,
    model_runs,
    naming,
    progress,
    registration,
    rendering,
    run_ids,
    sql_project,
    top_lists,
    writes,
)
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

TRIALS_TABLE = "model_trials"
OBJECTIVES = ("rmse", "ranking")
RANKING_K = 10  # the ranking objective: NDCG@10 on the standard protocol


@dataclass(frozen=True)
class TuneGrid:
    """A grid to search. objective 'rmse': the rating model (explicit), scored by validation
    RMSE. objective 'ranking': the list model, implicit ALS over ranks x regParams x maxIters
    x alphas, plus the rating model itself (`base`) as a candidate, scored by validation
    NDCG@10 with any held-out rating relevant (the ranking_metrics_query macro)."""

    ranks: tuple[int, ...] = (10, 20, 30, 50)
    reg_params: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2)
    max_iters: tuple[int, ...] = (15,)
    bias_centred: bool = True
    validation_fraction: float = 0.2
    seed: int = 42
    parallelism: int = 2
    base: als.TrainParams = field(default_factory=als.TrainParams)
    objective: str = "rmse"
    alphas: tuple[float, ...] = (1.0,)
    list_base: als.TrainParams = als.LIST_DEFAULTS

    def trials(self) -> list[als.TrainParams]:
        """Every combination as training parameters; invalid values fail before any work."""
        if self.objective not in OBJECTIVES:
            raise ReelhouseError(f"--objective must be one of {', '.join(OBJECTIVES)}, got "
                                 f"{self.objective!r}.")
        if not self.ranks or not self.reg_params or not self.max_iters or not self.alphas:
            raise ReelhouseError("The tuning grid is empty: give at least one rank, regParam, "
                                 "maxIter and alpha.")
        als.check_number("validation-fraction", self.validation_fraction, 0.0)
        if not 0 < self.validation_fraction < 1:
            raise ReelhouseError("--validation-fraction must be between 0 and 1 (exclusive), "
                                 f"got {self.validation_fraction!r}.")
        als.check_whole("parallelism", self.parallelism, 1, 64)
        if self.objective == "ranking":
            shared = {"seed": self.seed, "top_n": RANKING_K,
                      "min_movie_ratings": self.base.min_movie_ratings}
            trials = [replace(self.list_base, rank=rank, reg_param=reg, max_iter=iters,
                              alpha=alpha, implicit=True, bias_centred=None, **shared)
                      for rank in self.ranks for reg in self.reg_params
                      for iters in self.max_iters for alpha in self.alphas]
            trials.append(replace(self.base, implicit=False, **shared))  # the rating model
        else:
            trials = [replace(self.base, rank=rank, reg_param=reg, max_iter=iters,
                              bias_centred=self.bias_centred, implicit=False, seed=self.seed)
                      for rank in self.ranks for reg in self.reg_params
                      for iters in self.max_iters]
        return [t.validated() for t in trials]


TRIAL_COLUMNS = [
    ("trial_id", "string"), ("tune_id", "string"), ("tuned_at", "timestamp"), ("rank", "int"),
    ("reg_param", "double"), ("max_iter", "int"), ("bias_centred", "boolean"),
    ("user_bias_damping", "double"), ("movie_bias_damping", "double"), ("seed", "int"),
    ("validation_fraction", "double"), ("fit_rows", "bigint"), ("validation_rows", "bigint"),
    ("validation_cold_rows", "bigint"), ("validation_rmse", "double"),
    ("validation_mae", "double"), ("fit_seconds", "double"),
    ("input_versions", "map<string, bigint>"), ("objective", "string"),
    ("implicit", "boolean"), ("alpha", "double"), ("confidence", "string"),
    ("confidence_threshold", "double"), ("validation_users", "bigint"),
    ("validation_ndcg_at_10", "double"), ("validation_precision_at_10", "double"),
    ("params", "string"),
]
def validation_split(settings: Settings, train_rows, fraction: float, seed: int):
    """(fit rows, validation rows), both carved from the train rows only: a draw below
    `fraction` marks validation. The draw is the split_draw macro (sql/macros/splits.sql) that
    ratings_split uses, salted with 'validation' so it is independent of the test split."""
    draw = rendering.render_query(sql_project.load_project(settings), "validation_split",
                               "{{ split_draw(" + str(int(seed)) + ", \"'validation'\") }}")
    marked = train_rows.selectExpr("*", f"{draw} < {fraction!r} as is_validation")
    return (marked.where("not is_validation").drop("is_validation"),
            marked.where("is_validation").drop("is_validation"))


def evaluate_trial(spark, settings: Settings, fit_rows, validation_rows, base: als.Baseline,
                   params: als.TrainParams, scale: tuple[float, float]) -> dict:
    """Fit one grid point on the fit rows; RMSE and MAE on the warm validation rows."""
    target = als.residuals(fit_rows, base)
    started = time.monotonic()
    model = als.fit_als(spark, settings, target, params)
    fit_seconds = time.monotonic() - started
    user_factors = als.factor_table(model.userFactors, base.user_biases, fit_rows, "", "user_id")
    movie_factors = als.factor_table(model.itemFactors, base.movie_biases, fit_rows, "",
                                     "movie_id")
    scored = als.score_pairs(validation_rows, user_factors, movie_factors, base.global_mean, scale)
    row = scored.selectExpr(*als.METRICS).first()
    return {"rmse": row.rmse, "mae": row.mae, "rows": row.num_rows, "fit_seconds": fit_seconds}


def ranking_trials(spark, settings: Settings, tune_id: str, fit_rows, validation_rows,
                   trials: list[tuple[str, als.TrainParams]], scale, parallelism: int,
                   cached: list) -> tuple[dict, dict]:
    """Fit each trial on the fit rows and make its top 10 for every validation user (fit
    movies excluded); then score every list at once with the macro ranking_metrics uses, the
    fit rows as 'train' and the validation rows as 'test'. Returns ({trial_id: metrics row},
    {baseline: metrics row})."""
    users = validation_rows.select("user_id").distinct().cache()
    cached.append(users)

    def fit_and_list(trial):
        trial_id, params = trial
        own: list = []  # this trial's caches, released once its lists are kept
        try:
            fit = als.fit_model(spark, settings, fit_rows, params, trial_id,
                                f"trial {trial_id}", own)
            # one run (the tune) whose models are the trials: the baselines are made once
            lists = top_lists.top_lists(spark, fit, fit_rows, users, scale, trial_id) \
                .selectExpr(f"{naming.sql_string(tune_id)} as run_id", "run_id as model",
                            "user_id", "rank", "movie_id", "score", "false as served") \
                .localCheckpoint()  # materialised, cut from the fit
        finally:
            for df in own:
                df.unpersist()
        return fit.seconds, lists

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        made = list(pool.map(fit_and_list, trials))
    every_list = made[0][1]
    for _, lists in made[1:]:
        every_list = every_list.unionByName(lists)
    every_list.createOrReplaceTempView("__tune_lists")
    fit_rows.selectExpr("*", "'train' as split").unionByName(
        validation_rows.selectExpr("*", "'test' as split")).createOrReplaceTempView(
        "__tune_split")
    project = sql_project.load_project(settings)
    query = rendering.render_query(project, "tune_ranking", (
        "{{ ranking_metrics_query('__tune_lists', '__tune_split', '" + str(RANKING_K) + "', "
        "var('relevance_threshold'), var('bayesian_prior_weight')) }}"))
    rows = spark.sql(f"select * from ({query}) as scored where relevance = 'any'").collect()
    by_model = {row.model: row for row in rows}
    seconds = {trial_id: fit_seconds for (trial_id, _), (fit_seconds, _) in zip(trials, made,
                                                                               strict=True)}
    return ({trial_id: (by_model[trial_id], seconds[trial_id]) for trial_id, _ in trials},
            {name: by_model[name] for name in ("most_rated", "top_rated") if name in by_model})


def tune(spark, settings: Settings, grid: TuneGrid | None = None) -> str:
    """Fit every grid point on the train rows less a validation share, score each on that
    share (RMSE, or NDCG@10 for the ranking objective), and record every trial in
    model_trials in one commit; returns the tune_id. Trials run `parallelism` at a time, each
    a Spark job submitted from its own thread. No test row is read."""
    grid = grid or TuneGrid()
    trials = grid.trials()
    registration.register_warehouse(spark, settings)  # the inputs are read by name
    versions = model_runs.input_versions(spark, settings)
    tuned_at = datetime.now(UTC)
    tune_id = run_ids.new_run_id(tuned_at)
    trial_ids = [f"{tune_id}-{index + 1:03d}" for index in range(len(trials))]
    split = model_runs.read_input(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating")
    fit_rows, validation_rows = validation_split(settings, train_rows, grid.validation_fraction,
                                                 grid.seed)
    cached = [fit_rows.cache(), validation_rows.cache()]
    try:
        scale = als.rating_scale(model_runs.read_input(spark, settings, "ratings", versions))
        num_fit, num_validation = fit_rows.count(), validation_rows.count()
        if num_validation == 0 or num_fit == 0:
            raise ReelhouseError(f"The validation split left {num_fit:,} rows to fit and "
                                 f"{num_validation:,} to score: change --validation-fraction.")
        progress.say(f"tune {tune_id}: {len(trials)} trials ({grid.objective}) on {num_fit:,} "
                     f"fit rows, {num_validation:,} validation rows, {grid.parallelism} at a "
                     "time")
        with model_runs.run_checkpoints(spark, settings, tune_id):
            if grid.objective == "ranking":
                results = _tune_ranking(spark, settings, grid, tune_id, trials, trial_ids,
                                        fit_rows, validation_rows, scale, cached)
            else:
                results = _tune_rmse(spark, settings, grid, trials, fit_rows, validation_rows,
                                     scale, cached)
    finally:
        for df in cached:
            df.unpersist()
    rows = [(trial_id, tune_id, tuned_at, p.rank, float(p.reg_param), p.max_iter,
             p.bias_centred, float(p.user_bias_damping), float(p.movie_bias_damping), p.seed,
             float(grid.validation_fraction), num_fit, num_validation,
             r.get("cold_rows"), r.get("rmse"), r.get("mae"), r["fit_seconds"], versions,
             grid.objective, p.implicit, float(p.alpha), p.confidence,
             float(p.confidence_threshold), r.get("users"), r.get("ndcg"), r.get("precision"),
             json.dumps(asdict(p), sort_keys=True))
            for trial_id, p, r in zip(trial_ids, trials, results, strict=True)]
    writes.append_once(spark, settings, naming.literal_rows(spark, TRIAL_COLUMNS, rows),
                        TRIALS_TABLE, tune_id, *sql_project.table_docs(settings, TRIALS_TABLE))
    if grid.objective == "ranking":
        index = max(range(len(trials)), key=lambda i: results[i]["ndcg"] or 0.0)
        best = trials[index]
        model = "implicit ALS" if best.implicit else "the rating model (explicit ALS)"
        progress.say(f"best lists: {model}, rank {best.rank}, regParam {best.reg_param}"
                     f"{f', alpha {best.alpha:g}' if best.implicit else ''}, validation "
                     f"NDCG@{RANKING_K} {results[index]['ndcg']:.4f}; train with it: "
                     "reelhouse train --params best")
    else:
        index = min(range(len(trials)), key=lambda i: results[i]["rmse"])
        best = trials[index]
        progress.say(f"best: rank {best.rank}, regParam {best.reg_param}, maxIter "
                     f"{best.max_iter}, validation RMSE {results[index]['rmse']:.4f}; train "
                     "with it: reelhouse train --params best")
    return tune_id


def _tune_rmse(spark, settings, grid: TuneGrid, trials, fit_rows, validation_rows, scale,
               cached) -> list[dict]:
    base = als.baseline(spark, settings, fit_rows, trials[0])
    cached += [df for df in (base.user_biases, base.movie_biases) if df is not None]

    def run_trial(index_params):
        index, params = index_params
        result = evaluate_trial(spark, settings, fit_rows, validation_rows, base, params,
                                scale)
        progress.say(f"  trial {index + 1}/{len(trials)}: rank {params.rank}, regParam "
                     f"{params.reg_param}, maxIter {params.max_iter}: validation RMSE "
                     f"{result['rmse']:.4f} (fit {result['fit_seconds']:.1f}s)")
        return {**result, "cold_rows": num_validation - result["rows"]}

    num_validation = validation_rows.count()
    with ThreadPoolExecutor(max_workers=grid.parallelism) as pool:
        return list(pool.map(run_trial, enumerate(trials)))


def _tune_ranking(spark, settings, grid: TuneGrid, tune_id: str, trials, trial_ids, fit_rows,
                  validation_rows, scale, cached) -> list[dict]:
    scored, baselines = ranking_trials(spark, settings, tune_id, fit_rows, validation_rows,
                                       list(zip(trial_ids, trials, strict=True)), scale,
                                       grid.parallelism, cached)
    results = []
    for index, (trial_id, params) in enumerate(zip(trial_ids, trials, strict=True)):
        row, seconds = scored[trial_id]
        what = (f"implicit rank {params.rank}, regParam {params.reg_param}, alpha "
                f"{params.alpha:g}" if params.implicit else
                f"rating model (explicit rank {params.rank}, regParam {params.reg_param})")
        progress.say(f"  trial {index + 1}/{len(trials)}: {what}, maxIter {params.max_iter}: "
                     f"validation NDCG@{RANKING_K} {row.ndcg_at_k:.4f} (fit {seconds:.1f}s)")
        results.append({"ndcg": row.ndcg_at_k, "precision": row.precision_at_k,
                        "users": row.num_evaluated_users, "fit_seconds": seconds})
    for name, row in baselines.items():
        progress.say(f"  for comparison, {name}: validation NDCG@{RANKING_K} "
                     f"{row.ndcg_at_k:.4f}")
    return results


def _best_trial(spark, settings: Settings, objective: str):
    """The best trial of the latest tune with this objective (trials of different tunes saw
    different data, so they are not compared), or None."""
    if delta_log.current_version(spark, settings, TRIALS_TABLE) is None:
        return None
    columns = {f.name for f in spark.table(naming.qualified(settings, TRIALS_TABLE)).schema}
    if "objective" not in columns:  # trials recorded before the ranking objective
        if objective != "rmse":
            return None
        objective_filter = "true"
    else:
        objective_filter = f"coalesce(objective, 'rmse') = {naming.sql_string(objective)}"
    score, order = (("validation_rmse", "asc") if objective == "rmse"
                    else ("validation_ndcg_at_10", "desc"))
    return spark.sql(f"""
        with trials as (select * from {naming.qualified(settings, TRIALS_TABLE)}
                        where {objective_filter}),
        latest as (select max_by(tune_id, tuned_at) as tune_id from trials)
        select trials.* from trials join latest on trials.tune_id = latest.tune_id
        where {score} is not null
        order by {score} {order}, trial_id limit 1""").first()


def best_params(spark, settings: Settings) -> dict:
    """rank, reg_param, max_iter, bias_centred and seed of the lowest validation RMSE in the
    latest RMSE tune."""
    registration.register_warehouse(spark, settings)
    best = _best_trial(spark, settings, "rmse")
    if best is None:
        raise ReelhouseError("There are no RMSE tuning trials yet: run `reelhouse tune` before "
                             "`reelhouse train --params best`.")
    return {"rank": best.rank, "reg_param": best.reg_param, "max_iter": best.max_iter,
            "bias_centred": best.bias_centred, "user_bias_damping": best.user_bias_damping,
            "movie_bias_damping": best.movie_bias_damping, "seed": best.seed}


def best_list_params(spark, settings: Settings) -> tuple[als.TrainParams, str] | None:
    """The list model of the highest validation NDCG@10 in the latest ranking tune, and why
    (None before any ranking tune)."""
    registration.register_warehouse(spark, settings)
    best = _best_trial(spark, settings, "ranking")
    if best is None:
        return None
    params = als.TrainParams(**json.loads(best.params))
    return params, (f"best of tune {best.tune_id} (validation NDCG@{RANKING_K} "
                    f"{best.validation_ndcg_at_10:.4f})")
