"""`reelhouse train` and `reelhouse tune`: fit Spark MLlib ALS and publish what analysts query.

Two models, each chosen by measurement (README, Accuracy):
- the rating model, explicit bias-centred ALS: the global mean and damped movie and user
  biases are computed in SQL and ALS learns the residuals; an estimate is global mean + user
  bias + movie bias + user factors . movie factors. It gives predictions and the RMSE.
- the list model, implicit-feedback ALS by default (LIST_DEFAULTS): ratings as confidence
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
"""

from __future__ import annotations

import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from pipelines import delta_log, naming, progress, registration, storage, writes
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

INPUT_TABLES = ("ratings_split", "ratings")
OUTPUT_TABLES = ("user_factors", "movie_factors", "rating_user_factors", "rating_movie_factors",
                 "predictions", "test_recommendations", "candidate_recommendations",
                 "recommendations", "similar_movies")
RUNS_TABLE = "model_runs"
TRIALS_TABLE = "model_trials"


@dataclass(frozen=True)
class TrainParams:
    """Training parameters. The defaults are measured, not Spark's: test RMSE on
    ml-latest-small, default random 80/20 split, the same 19,386 warm test rows
    (`python -m bench.accuracy [--grid]` prints the comparison):
        Spark ALS defaults (rank 10, maxIter 10, regParam 0.1)        0.8853
        plain ALS, regParam 0.15 (best of 0.05-0.3; rank 30: 0.8714)  0.8736
        bias-centred, Spark's rank/maxIter/regParam                    0.8649
        bias-centred, rank 30, maxIter 15, regParam 0.15 (defaults)    0.8431
    Rank 50 gains 0.0004 for about 1.5x the fit time, maxIter 20 gains 0.0002; bias damping
    (user 5, movie 10) is within 0.0006 of the best tried, while no damping costs 0.026.
    `reelhouse tune` (validation share of the train rows only, 4 ranks x 4 regParams) ranks
    regParam 0.15 best at every rank >= 20, rank 50 first by 0.0008 and rank 30 second."""

    rank: int = 30
    max_iter: int = 15
    reg_param: float = 0.15
    alpha: float = 1.0  # implicit mode only: confidence = 1 + alpha * value (Hu et al.)
    implicit: bool = False
    # implicit mode only: the value a rating becomes (see implicit_value_sql): the rating
    # itself, 1 for every rating ('binary'), or 1 for ratings >= confidence_threshold and
    # nothing for the rest ('threshold').
    confidence: str = "rating"
    confidence_threshold: float = 4.0
    nonnegative: bool = False
    seed: int = 42
    top_n: int = 10
    # Movies with fewer train ratings are never recommended nor named similar: with one or
    # two ratings a movie's factors just fit those users' residuals (ALS-WR regularises it
    # by its rating count), so it tops lists by accident. Predictions keep every movie.
    min_movie_ratings: int = 10
    # None: on for explicit ratings, off for implicit (biases of a confidence make no sense).
    bias_centred: bool | None = None
    # Damping: a bias is shrunk toward 0 as if it had this many extra ratings at the mean.
    user_bias_damping: float = 5.0
    movie_bias_damping: float = 10.0
    checkpoint_interval: int = 5

    def validated(self) -> TrainParams:
        """The same parameters with bias_centred decided, or a ReelhouseError naming the bad
        one. Called before anything is read or written."""
        _whole("rank", self.rank, 1, 1000)
        _whole("max-iter", self.max_iter, 1, 1000)
        _whole("seed", self.seed, -2**31, 2**31 - 1)
        _whole("top-n", self.top_n, 1, 1000)
        _whole("min-movie-ratings", self.min_movie_ratings, 1, 2**31 - 1)
        _whole("checkpoint-interval", self.checkpoint_interval, 1, 1000)
        _number("reg-param", self.reg_param, 0.0)
        _number("alpha", self.alpha, 0.0)
        _number("user-bias-damping", self.user_bias_damping, 0.0)
        _number("movie-bias-damping", self.movie_bias_damping, 0.0)
        _number("confidence-threshold", self.confidence_threshold, 0.0)
        if self.confidence not in CONFIDENCES:
            raise ReelhouseError(f"--confidence must be one of {', '.join(CONFIDENCES)}, got "
                                 f"{self.confidence!r}.")
        for name in ("implicit", "nonnegative"):
            if not isinstance(getattr(self, name), bool):
                raise ReelhouseError(f"{name} must be true or false.")
        if self.bias_centred is not None and not isinstance(self.bias_centred, bool):
            raise ReelhouseError("bias_centred must be true, false or unset.")
        if self.implicit and self.bias_centred:
            raise ReelhouseError("Bias centring applies to explicit ratings only: drop "
                                 "--bias-centred or --implicit.")
        return replace(self, bias_centred=not self.implicit if self.bias_centred is None
                       else self.bias_centred)


CONFIDENCES = ("rating", "binary", "threshold")


def implicit_value_sql(params: TrainParams) -> str:
    """What implicit ALS learns from a rating, as a SQL expression over `rating`: Spark takes
    confidence 1 + alpha * value and preference value > 0, so a 0 counts as not rated."""
    if params.confidence == "binary":
        return "cast(1.0 as float)"
    if params.confidence == "threshold":
        return f"cast(if(rating >= {params.confidence_threshold!r}, 1.0, 0.0) as float)"
    return "cast(rating as float)"


# The list model: implicit-feedback ALS, chosen by measurement (README, Accuracy; reproduce
# with `python -m bench.accuracy --ranking`): on ml-latest-small its test lists rank at
# about 1.85x the most-rated baseline, where the explicit rating model's rank below it.
LIST_DEFAULTS = TrainParams(rank=64, max_iter=15, reg_param=0.3, alpha=1.0, implicit=True,
                            confidence="rating")


def list_model_params(params: TrainParams, base: TrainParams = LIST_DEFAULTS,
                      **overrides) -> TrainParams:
    """The list model for a run whose rating model is `params`: `base` (the defaults, or a
    tune's best) with the settings a run shares (seed, top N, the movies that may be listed,
    nonnegative factors) taken from `params`, then `overrides`; validated."""
    return replace(base, seed=params.seed, top_n=params.top_n,
                   min_movie_ratings=params.min_movie_ratings, nonnegative=params.nonnegative,
                   **overrides).validated()


def list_model_name(params: TrainParams) -> str:
    """How ranking_metrics and model_runs name a model's lists."""
    return "implicit_als" if params.implicit else "explicit_als"


def _whole(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ReelhouseError(f"--{name} must be a whole number from {low} to {high}, "
                             f"got {value!r}.")


def _number(name: str, value, low: float) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < low):
        raise ReelhouseError(f"--{name} must be a finite number >= {low:g}, got {value!r}.")


# --- inputs ------------------------------------------------------------------------------------

def input_versions(spark, settings: Settings) -> dict[str, int]:
    """The Delta version of each input table now, read from the log listings (no Spark job);
    training reads exactly these versions."""
    versions = {}
    for table in INPUT_TABLES:
        version = delta_log.current_version(spark, settings, table)
        if version is None:
            raise ReelhouseError(f"{naming.qualified(settings, table)} does not exist: run "
                                 "`reelhouse run` (or `reelhouse build`) before training.")
        versions[table] = version
    return versions


def _read(spark, settings: Settings, table: str, versions: dict[str, int]):
    return spark.sql(f"select * from {naming.qualified(settings, table)} "
                     f"version as of {int(versions[table])}")


def _rating_scale(spark, ratings) -> tuple[float, float]:
    # One small aggregate: predictions are clipped to the dataset's own scale (0.5-5 or 1-5).
    row = ratings.selectExpr("min(rating) as low", "max(rating) as high").first()
    if row.low is None:
        raise ReelhouseError("movielens.ratings is empty: there is nothing to train on.")
    return float(row.low), float(row.high)


# --- the model ---------------------------------------------------------------------------------

@dataclass
class Baseline:
    """What a bias-centred model predicts before factors: global mean + user and movie biases
    (zero everywhere for a plain model). The biases are DataFrames (user_id|movie_id, bias)."""

    global_mean: float
    user_biases: object = None
    movie_biases: object = None


def baseline(spark, train_rows, params: TrainParams) -> Baseline:
    """Global mean, then damped movie biases, then damped user biases on what the movie
    biases leave, all in SQL (one scalar is collected: the mean, a literal from then on)."""
    if not params.bias_centred:
        return Baseline(0.0)
    train_rows.createOrReplaceTempView("__train_bias_rows")
    mean = spark.sql("select avg(rating) as global_mean from __train_bias_rows").first()[0]
    if mean is None:
        raise ReelhouseError("There are no train rows in movielens.ratings_split to fit on.")
    movie_biases = spark.sql(f"""
        select movie_id,
               sum(rating - {mean!r}) / (count(*) + {params.movie_bias_damping!r}) as bias
        from __train_bias_rows
        group by movie_id""")
    movie_biases.createOrReplaceTempView("__train_movie_biases")
    user_biases = spark.sql(f"""
        select train.user_id,
               sum(train.rating - {mean!r} - movie.bias)
                   / (count(*) + {params.user_bias_damping!r}) as bias
        from __train_bias_rows as train
        join __train_movie_biases as movie on movie.movie_id = train.movie_id
        group by train.user_id""")
    return Baseline(float(mean), user_biases.cache(), movie_biases.cache())


def residuals(train_rows, base: Baseline, params: TrainParams | None = None):
    """The value ALS learns for each train rating: the rating less the baseline (explicit),
    or what the rating says of a preference (implicit, implicit_value_sql)."""
    if params is not None and params.implicit:
        return train_rows.selectExpr("user_id", "movie_id",
                                     f"{implicit_value_sql(params)} as target")
    if base.user_biases is None:
        return train_rows.selectExpr("user_id", "movie_id", "cast(rating as float) as target")
    user = base.user_biases.withColumnRenamed("bias", "user_bias")
    movie = base.movie_biases.withColumnRenamed("bias", "movie_bias")
    return (train_rows.join(user, "user_id").join(movie, "movie_id")
            .selectExpr("user_id", "movie_id",
                        f"cast(rating - {base.global_mean!r} - user_bias - movie_bias as float)"
                        " as target"))


def fit_als(spark, settings: Settings, rows, params: TrainParams):
    """ALS on (user_id, movie_id, target). A checkpoint directory is always set (without one
    checkpointInterval is silently ignored and long runs die of StackOverflowError); one block
    per task slot; the rows are repartitioned by user and sorted, so the same data and seed
    give the same factors run after run."""
    from pyspark.ml.recommendation import ALS

    if spark.sparkContext.getCheckpointDir() is None:
        spark.sparkContext.setCheckpointDir(settings.checkpoint_location)
    blocks = int(spark.conf.get("spark.default.parallelism", None)
                 or spark.sparkContext.defaultParallelism)
    als = ALS(rank=params.rank, maxIter=params.max_iter, regParam=params.reg_param,
              alpha=params.alpha, implicitPrefs=params.implicit,
              nonnegative=params.nonnegative, seed=params.seed,
              numUserBlocks=blocks, numItemBlocks=blocks,
              checkpointInterval=params.checkpoint_interval,
              userCol="user_id", itemCol="movie_id", ratingCol="target")
    ordered = rows.repartition(blocks, "user_id").sortWithinPartitions("user_id", "movie_id")
    return als.fit(ordered)


def factor_table(factors, biases, train_rows, run_id: str, key: str):
    """A model's factors (id, features) as published: run_id, id, factors, bias (0 unless
    bias-centred), num_ratings (train ratings behind them)."""
    counts = train_rows.groupBy(key).count().selectExpr(f"{key} as id", "count as num_ratings")
    df = factors.selectExpr("id", "features as factors").join(counts, "id", "left")
    if biases is None:
        df = df.selectExpr("*", "cast(0.0 as double) as bias")
    else:
        df = df.join(biases.withColumnRenamed(key, "id"), "id", "left")
    return df.selectExpr(f"{naming.sql_string(run_id)} as run_id", "id", "factors",
                         "coalesce(bias, 0.0) as bias", "coalesce(num_ratings, 0) as num_ratings")


def score_pairs(pairs, user_factors, movie_factors, global_mean: float,
                scale: tuple[float, float] | None):
    """Predicted ratings for (user_id, movie_id, …) pairs whose user and movie both have
    factors, by the SQL function movielens.rating_estimate (udfs/ratings.sql, also behind the
    rating_estimates view), within the rating scale (None: unbounded)."""
    from pyspark.sql.functions import expr

    low, high = scale if scale is not None else (None, None)
    estimate = (f"movielens.rating_estimate({global_mean!r}, users.bias, movies.bias, "
                f"users.factors, movies.factors, {naming.sql_literal(low)}, "
                f"{naming.sql_literal(high)})")
    return (pairs.alias("pairs")
            .join(user_factors.alias("users"), expr("pairs.user_id = users.id"))
            .join(movie_factors.alias("movies"), expr("pairs.movie_id = movies.id"))
            .selectExpr("pairs.*", f"{estimate} as prediction"))


# Errors are summed as decimals: exact, so the total does not depend on the order in which
# partitions arrive, and the same model gives the same RMSE to the last digit.
METRICS = (
    "count(*) as num_rows",
    "cast(sqrt(avg(cast(pow(prediction - rating, 2) as decimal(38, 18)))) as double) as rmse",
    "cast(avg(cast(abs(prediction - rating) as decimal(38, 18))) as double) as mae",
)


def clip(value_sql: str, scale: tuple[float, float] | None) -> str:
    """A SQL expression kept within the rating scale (scale None: left as it is)."""
    if scale is None:
        return value_sql
    return f"least(greatest({value_sql}, {scale[0]!r}), {scale[1]!r})"


def factor_model(spark, rank: int, user_factors, item_factors, user_col: str, item_col: str):
    """An MLlib ALSModel over factor tables we made (id int, features array<float>), so its
    blocked top-k (`recommendForAllUsers`: one matrix product per block of users and items,
    a bounded queue per user, never the full cross join) ranks by the dot product we choose.
    ALSModel's constructor is private[ml] in Scala, which the JVM (and so Py4J) sees as
    public."""
    from pyspark.ml.recommendation import ALSModel

    java_model = spark._jvm.org.apache.spark.ml.recommendation.ALSModel(
        f"reelhouse_{uuid.uuid4().hex[:8]}", rank, user_factors._jdf, item_factors._jdf)
    java_model.setUserCol(user_col)
    java_model.setItemCol(item_col)
    # Made this way the model has no param defaults: set what transform() reads (a saved
    # model carries them), leaving pairs it cannot score as NaN, as ALS's own default does.
    java_model.setPredictionCol("prediction")
    java_model.setColdStartStrategy("nan")
    return ALSModel(java_model)


# --- what a run publishes ------------------------------------------------------------------

def recommend_for_users(spark, user_factors, movie_factors, rank: int, train_rows,
                        top_n: int):
    """Top N movies of movie_factors (the candidates) that the user did not rate in train,
    for every user with factors: (user_id, rank, movie_id, raw_score), raw_score = movie bias
    + factors . factors (the user's own bias and the global mean do not change the order).
    MLlib's top-k does not know what a user rated, so ask for N + k, drop rated movies, and
    ask again with a 4x bigger k for the users left short; a user is done once
    k >= N + their number of rated movies, which guarantees N unrated ones.
    Each round's rows are checkpointed locally (Spark drops them with the DataFrames)."""
    users = user_factors.selectExpr("id", "concat(factors, array(cast(1.0 as float))) "
                                    "as features")
    movies = movie_factors.selectExpr("id", "concat(factors, array(cast(bias as float))) "
                                      "as features")
    model = factor_model(spark, rank + 1, users, movies, "user_id", "movie_id")
    num_movies = movie_factors.count()  # the k that means "every movie"
    rated = train_rows.select("user_id", "movie_id")
    rated_counts = rated.groupBy("user_id").count().withColumnRenamed("count", "num_rated")
    ask = min(3 * top_n, num_movies)
    pending = user_factors.selectExpr("id as user_id")
    pieces = []
    first_round = True
    while True:
        asked = (model.recommendForAllUsers(ask) if first_round
                 else model.recommendForUserSubset(pending, ask))
        candidates = asked.selectExpr("user_id", "inline(recommendations)") \
            .withColumnRenamed("rating", "raw_score")
        kept = (candidates.join(rated, ["user_id", "movie_id"], "left_anti")
                .selectExpr("*", "row_number() over (partition by user_id "
                                 "order by raw_score desc, movie_id) as rank")
                .where(f"rank <= {top_n}")
                # Materialised and cut from its plan: each round's plan holds every earlier
                # one, and printing such plans for the SQL listener ran a 2 GB driver out of
                # heap on ml-latest-small.
                .localCheckpoint())
        got = kept.groupBy("user_id").count().withColumnRenamed("count", "num_kept")
        short = (pending.join(rated_counts, "user_id", "left")
                 .join(got, "user_id", "left")
                 .where(f"coalesce(num_kept, 0) < {top_n} "
                        f"and coalesce(num_rated, 0) + {top_n} > {ask}")
                 .select("user_id"))
        if ask >= num_movies:
            short = short.limit(0)
        short = short.localCheckpoint()
        num_short = short.count()  # decides whether another round is needed
        pieces.append(kept.join(short, "user_id", "left_anti"))
        if num_short == 0:
            break
        progress.say(f"  {num_short:,} users rated most of their top {ask}: asking again "
                     f"with {min(ask * 4, num_movies)}")
        pending, ask, first_round = short, min(ask * 4, num_movies), False
    result = pieces[0]
    for piece in pieces[1:]:
        result = result.unionByName(piece)
    return result.select("user_id", "rank", "movie_id", "raw_score")


def similar_movies(spark, movie_factors, rank: int, top_n: int, min_ratings: int = 1):
    """Top N movies by cosine similarity of factors, for every movie with non-zero factors:
    the factors are normalised to unit length, then MLlib's blocked top-k finds the largest
    dot products (asking N + 1, since a movie is most similar to itself). Only movies with
    `min_ratings` train ratings may be named similar: a movie rated once has a direction
    that is mostly noise, and cosine ignores the length that says so."""
    norm = "sqrt(aggregate(factors, cast(0 as double), (t, x) -> t + cast(x as double) * x))"
    unit = (movie_factors.selectExpr("id", "factors", f"{norm} as norm").where("norm > 0")
            .selectExpr("id", "transform(factors, x -> cast(x / norm as float)) as features"))
    similar = unit.join(movie_factors.where(f"num_ratings >= {int(min_ratings)}")
                        .select("id"), "id", "left_semi")
    model = factor_model(spark, rank, unit, similar, "movie_id", "similar_movie_id")
    return (model.recommendForAllUsers(top_n + 1)
            .selectExpr("movie_id", "inline(recommendations)")
            .where("movie_id != similar_movie_id")
            .selectExpr("movie_id", "similar_movie_id", "cast(rating as double) as similarity",
                        "row_number() over (partition by movie_id "
                        "order by rating desc, similar_movie_id) as rank")
            .where(f"rank <= {top_n}")
            .select("movie_id", "rank", "similar_movie_id", "similarity"))


def most_rated_for(users, rows, top_n: int):
    """The fallback list of users the model cannot score (no factors): the top N movies by
    number of ratings in `rows` (the rows the model was fit on, so an evaluation list never
    sees a test rating), ties by lower movie_id; score = that count. Such users have no rows
    in `rows`, so none of these is a movie they rated there."""
    popular = (rows.groupBy("movie_id").count()
               .orderBy("count", "movie_id", ascending=[False, True]).limit(top_n)
               .selectExpr("movie_id", "cast(count as double) as score",
                           "row_number() over (order by count desc, movie_id) as rank"))
    return users.crossJoin(popular).select("user_id", "rank", "movie_id", "score")


# --- runs: recording, recovering ----------------------------------------------------------

RUN_COLUMNS = [
    ("run_id", "string"), ("started_at", "timestamp"), ("finished_at", "timestamp"),
    ("params", "string"), ("global_mean", "double"), ("rating_scale_min", "double"),
    ("rating_scale_max", "double"), ("train_rows", "bigint"), ("test_rows", "bigint"),
    ("prediction_rows", "bigint"), ("cold_start_rows", "bigint"),
    ("recommended_users", "bigint"), ("fit_seconds", "double"), ("total_seconds", "double"),
    ("rmse", "double"), ("mae", "double"), ("input_versions", "map<string, bigint>"),
    ("output_versions", "map<string, bigint>"), ("model_path", "string"),
    ("list_model", "string"), ("list_params", "string"), ("serving_global_mean", "double"),
    ("serving_rows", "bigint"), ("serving_fit_seconds", "double"), ("list_choice", "string"),
]
RUN_DOCS = {
    "run_id": "The training run: <UTC start time>-<random suffix>, sortable by time.",
    "global_mean": "Mean train rating of a bias-centred run (0 for plain and implicit runs).",
    "cold_start_rows": "Test rows left out of predictions: user or movie unseen in training.",
    "fit_seconds": "Wall time of ALS.fit.",
    "rmse": "Root mean squared error of predictions on the test rows (null for implicit).",
    "mae": "Mean absolute error of predictions on the test rows (null for implicit).",
    "input_versions": "Delta version of each input table the run read.",
    "output_versions": "Delta version of each output table the run wrote (for time travel).",
    "model_path": "Folder of the saved MLlib models: ratings/ (the rating model, biases "
                  "folded into its factors: transform() gives the unclipped estimate) and "
                  "lists/ (the serving list model); ALSModel.load reads each.",
    "params": "The rating model's parameters as JSON (explicit, fit on train).",
    "list_model": "The model that serves the lists: implicit_als or explicit_als.",
    "list_params": "The list model's parameters as JSON (its evaluation fit on train and its "
                   "serving fit on every rating use the same).",
    "serving_global_mean": "Mean rating of the serving fit (0 unless bias-centred).",
    "serving_rows": "Ratings the serving list model was refit on (every split).",
    "serving_fit_seconds": "Wall time of the serving fit.",
    "list_choice": "Why that list model serves: the default, or the tune that chose it.",
    "train_rows": "Train ratings the evaluation fits saw.",
}


def latest_run(spark, settings: Settings):
    """The newest model_runs row, or None before the first run."""
    if delta_log.current_version(spark, settings, RUNS_TABLE) is None:
        return None
    return (spark.table(naming.qualified(settings, RUNS_TABLE))
            .orderBy("finished_at", "run_id", ascending=False).first())


def recover_interrupted(spark, settings: Settings) -> dict[str, int | None]:
    """An output table holding rows of a run that is not the latest in model_runs was written
    by a run that never finished (killed before it could restore it): put it back to the
    version the latest model_runs row names (or drop it if no run ever finished). Returns
    each output table's version afterwards (None: absent)."""
    registration.register_warehouse(spark, settings)
    last = latest_run(spark, settings)
    expected = dict(last.output_versions or {}) if last is not None else {}
    versions = {table: delta_log.current_version(spark, settings, table) for table in OUTPUT_TABLES}
    moved = [table for table, version in versions.items()
             if version is not None and version != expected.get(table)]
    fixed = moved
    if last is not None and moved:  # a restored table is moved but holds the last run's rows
        with ThreadPoolExecutor(max_workers=len(moved)) as pool:  # one-row reads, overlapped
            writers = list(pool.map(lambda t: _written_by(spark, settings, t), moved))
        fixed = [t for t, writer in zip(moved, writers, strict=True) if writer != last.run_id]
    failures = writes.restore_all(spark, settings, {t: expected.get(t) for t in fixed})
    if failures:
        raise ReelhouseError("Could not put back the output tables of an unfinished train: " +
                             "; ".join(f"{t}: {e}" for t, e in failures.items()))
    versions.update({table: delta_log.current_version(spark, settings, table) for table in fixed})
    if fixed:
        progress.say(f"an earlier train did not finish: put {', '.join(fixed)} back as the "
                     f"last finished run ({last.run_id if last else 'none'}) left them")
    return versions


def _written_by(spark, settings: Settings, table: str) -> str | None:
    """The run whose rows a table holds (one row read; None when it is empty). A restored
    table has a new Delta version but the old run's rows, so the run_id is what tells."""
    row = spark.sql(f"select run_id from {naming.qualified(settings, table)} limit 1").first()
    return row.run_id if row is not None else None


def _rollback(spark, settings: Settings, before: dict[str, int | None], model_path: str):
    progress.say("train failed: putting the output tables back to their versions before it")
    for table, error in writes.restore_all(spark, settings, before).items():
        # the others are restored; the next train repairs this one (recover_interrupted)
        progress.say(f"could not restore {table} to version {before[table]}: {error}")
    try:
        storage.delete_path(spark, model_path)
    except Exception as exc:  # a leftover model folder is harmless; say so
        progress.say(f"could not delete {model_path}: {exc}")


@contextmanager
def run_checkpoints(spark, settings: Settings, run_id: str):
    """ALS's checkpoints for one run in a folder of their own, deleted when the run ends
    (ALS deletes all but its last checkpoint itself; this removes the last)."""
    folder = f"{settings.checkpoint_location}/{run_id}"
    spark.sparkContext.setCheckpointDir(folder)
    try:
        yield
    finally:
        try:
            storage.delete_path(spark, folder)
        except Exception as exc:  # leftover checkpoints waste space but harm nothing
            progress.say(f"could not delete the checkpoints in {folder}: {exc}")


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _publish(spark, settings: Settings, df, table: str, comment: str) -> int:
    """Replace an output table in one Delta commit; returns the version written."""
    spark.sparkContext.setJobDescription(f"write {naming.qualified(settings, table)}")
    try:
        with progress.step(f"write {naming.qualified(settings, table)}") as step:
            writes.replace_table(spark, settings, df, table, comment)
            rows = delta_log.rows_in_last_commit(spark, settings, table)
            step["result"] = f"{rows:,} rows" if rows is not None else ""
    finally:
        spark.sparkContext.setJobDescription(None)
    return delta_log.current_version(spark, settings, table)


DEFAULT_LIST_CHOICE = ("the default, chosen by validation NDCG@10 on ml-latest-small (README, "
                       "Accuracy); `reelhouse tune --objective ranking` then `reelhouse "
                       "train --params best` choose on this data")


def train(spark, settings: Settings, params: TrainParams | None = None,
          list_params: TrainParams | None = None, list_choice: str = DEFAULT_LIST_CHOICE
          ) -> str:
    """Fit, publish every output table, record the run; returns its run_id. `params`: the
    rating model (explicit); `list_params`: the list model (LIST_DEFAULTS unless given; the
    rating model's own params make the rating model serve the lists too); `list_choice`: why
    that list model, printed and recorded."""
    params = (params or TrainParams()).validated()
    if params.implicit:
        raise ReelhouseError("The rating model is explicit (it predicts ratings): give implicit "
                             "settings to the list model (--list-model implicit).")
    list_params = (list_params or list_model_params(params)).validated()
    registration.register_warehouse(spark, settings)  # the inputs are read by name
    versions = input_versions(spark, settings)
    before = recover_interrupted(spark, settings)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    run_id = new_run_id(started_at)
    model_path = f"{settings.warehouse}/_models/{run_id}"
    cached: list = []
    try:
        with run_checkpoints(spark, settings, run_id):
            result = _train_and_publish(spark, settings, params, list_params, list_choice,
                                        versions, run_id, started_at, clock, model_path,
                                        cached)
    except BaseException:
        _rollback(spark, settings, before, model_path)
        raise
    finally:
        for df in cached:
            df.unpersist()
    metrics, num_test, num_users = result
    progress.say(f"run {run_id}: test RMSE {metrics.rmse:.4f} on {metrics.num_rows:,} rows "
                 f"({num_test - metrics.num_rows:,} cold-start rows left out); lists for "
                 f"{num_users:,} users served by {list_model_name(list_params)} refit on every "
                 f"rating: {list_choice}")
    return run_id


@dataclass
class Fit:
    """One ALS fit as the run uses it: the MLlib model, the baseline it was centred on, and
    its factors as published (factor_table), cached."""

    params: TrainParams
    model: object
    base: Baseline
    user_factors: object
    movie_factors: object
    rows: int
    seconds: float


def fit_model(spark, settings: Settings, rows, params: TrainParams, run_id: str, what: str,
              cached: list) -> Fit:
    """Baseline, target and ALS on `rows` (user_id, movie_id, rating), with progress."""
    with progress.step(f"fit {what}: ALS rank {params.rank}, regParam {params.reg_param}, "
                       f"{params.max_iter} iterations"
                       f"{', bias-centred' if params.bias_centred else ''}"
                       f"{f', implicit ({params.confidence}, alpha {params.alpha})' if params.implicit else ''}"  # noqa: E501
                       ) as step:
        base = baseline(spark, rows, params)
        cached += [df for df in (base.user_biases, base.movie_biases) if df is not None]
        target = residuals(rows, base, params).cache()
        cached.append(target)
        count = target.count()  # materialises the cache before the fit is timed
        if count == 0:
            raise ReelhouseError(f"There are no rows to fit the {what} on.")
        started = time.monotonic()
        model = fit_als(spark, settings, target, params)
        seconds = time.monotonic() - started
        step["result"] = f"{count:,} rows, fit {seconds:.1f}s"
    user_factors = factor_table(model.userFactors, base.user_biases, rows, run_id,
                                "user_id").cache()
    movie_factors = factor_table(model.itemFactors, base.movie_biases, rows, run_id,
                                 "movie_id").cache()
    cached += [user_factors, movie_factors]
    return Fit(params, model, base, user_factors, movie_factors, count, seconds)


def rating_model(spark, fit: Fit):
    """The rating model as one MLlib ALSModel whose transform() gives the full estimate
    mu + b_user + b_movie + p.q (not clipped): the factors extended by (1, b_user + mu) for
    users and (b_movie, 1) for movies, so the saved model needs no side tables."""
    mean = repr(fit.base.global_mean)
    users = fit.user_factors.selectExpr(
        "id", f"concat(factors, array(cast(1.0 as float), cast(bias + {mean} as float))) "
        "as features")
    movies = fit.movie_factors.selectExpr(
        "id", "concat(factors, array(cast(bias as float), cast(1.0 as float))) as features")
    return factor_model(spark, fit.params.rank + 2, users, movies, "user_id", "movie_id")


def _train_and_publish(spark, settings: Settings, params: TrainParams,
                       list_params: TrainParams, list_choice: str, versions: dict, run_id: str,
                       started_at: datetime, clock: float, model_path: str, cached: list):
    """Steps 2-6 of the module docstring; returns (metrics row, test rows, served users)."""
    split = _read(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating") \
        .cache()
    test_rows = split.where("split = 'test'").select("user_id", "movie_id", "rating")
    all_rows = _read(spark, settings, "ratings", versions) \
        .select("user_id", "movie_id", "rating").cache()
    cached += [train_rows, all_rows]
    scale = _rating_scale(spark, all_rows)

    # Evaluation: both models fit on train only, scored on the test rows.
    ratings_fit = fit_model(spark, settings, train_rows, params, run_id,
                            "rating model on train", cached)
    predictions = score_pairs(test_rows, ratings_fit.user_factors, ratings_fit.movie_factors,
                              ratings_fit.base.global_mean, scale).selectExpr(
        f"{naming.sql_string(run_id)} as run_id", "user_id", "movie_id", "rating",
        "prediction").cache()
    cached.append(predictions)
    lists_fit = (ratings_fit if list_params == params else
                 fit_model(spark, settings, train_rows, list_params, run_id,
                           "list model on train", cached))
    evaluated_users = test_rows.select("user_id").distinct()

    # Serving: the list model refit on every rating (every split), with the same settings.
    serving_fit = fit_model(spark, settings, all_rows, list_params, run_id,
                            "list model on every rating", cached)
    results: dict = {}

    def lists(fit: Fit, rated, users):
        return top_lists(spark, fit, rated, users, scale, run_id)

    def recommendations():
        results["recommendations"] = lists(serving_fit, all_rows, None).cache()
        cached.append(results["recommendations"])
        return results["recommendations"]

    def candidate_lists():  # the rating model's lists, when another model serves
        if lists_fit is ratings_fit:
            return naming.literal_rows(spark, LIST_COLUMNS, [])
        return lists(ratings_fit, train_rows, evaluated_users)

    outputs_to_write = {  # table: (rows, comment); rows may be a function computing them
        "user_factors": (serving_fit.user_factors, "Factors of the serving list model (fit "
                         "on every rating) and the user bias (0 unless bias-centred), latest "
                         "run."),
        "movie_factors": (serving_fit.movie_factors, "Factors of the serving list model (fit "
                          "on every rating) and the movie bias, latest run."),
        "rating_user_factors": (ratings_fit.user_factors, "Rating model (explicit, "
                                "bias-centred, fit on train): user factors and damped bias."),
        "rating_movie_factors": (ratings_fit.movie_factors, "Rating model (explicit, "
                                 "bias-centred, fit on train): movie factors and damped bias."),
        "predictions": (predictions, "The rating model's estimate of every test row whose "
                        "user and movie were seen in training (latest run)."),
        "test_recommendations": (lambda: lists(lists_fit, train_rows, evaluated_users),
                                 "Top N of the serving list model as fit on train, train items "
                                 "excluded, for every user with a test rating (latest run): "
                                 "what ranking_metrics scores."),
        "candidate_recommendations": (candidate_lists, "Top N test lists of the other "
                                      "candidate models (fit on train, latest run)."),
        "recommendations": (recommendations, "Top N movies per user never rated by them, from "
                            "the list model refit on every rating (latest run); source "
                            "'most_rated' for users the model cannot score."),
        "similar_movies": (lambda: similar_movies(
            spark, serving_fit.movie_factors, list_params.rank, list_params.top_n,
            list_params.min_movie_ratings)
            .selectExpr(f"{naming.sql_string(run_id)} as run_id", "*"),
            "Top N movies by cosine similarity of the serving model's factors (latest run)."),
    }

    def write(table: str) -> int:
        rows, comment = outputs_to_write[table]
        return _publish(spark, settings, rows() if callable(rows) else rows, table, comment)

    # The tables are independent: written side by side, each in its own Delta commit,
    # so Spark's scheduling gaps and commit latency of one overlap the work of another.
    with ThreadPoolExecutor(max_workers=max(1, settings.threads),
                            thread_name_prefix="reelhouse-publish") as pool:
        futures = {table: pool.submit(write, table) for table in OUTPUT_TABLES}
    outputs = {table: future.result() for table, future in futures.items()}
    recommendations = results["recommendations"]

    rating_model(spark, ratings_fit).write().overwrite().save(f"{model_path}/ratings")
    serving_fit.model.write().overwrite().save(f"{model_path}/lists")
    metrics = predictions.selectExpr(*METRICS).first()
    num_test = test_rows.count()
    num_users = recommendations.select("user_id").distinct().count()
    row = (run_id, started_at, datetime.now(UTC), json.dumps(asdict(params), sort_keys=True),
           ratings_fit.base.global_mean, scale[0], scale[1], ratings_fit.rows, num_test,
           metrics.num_rows, num_test - metrics.num_rows, num_users, ratings_fit.seconds,
           time.monotonic() - clock, metrics.rmse, metrics.mae, versions, outputs, model_path,
           list_model_name(list_params), json.dumps(asdict(list_params), sort_keys=True),
           serving_fit.base.global_mean, serving_fit.rows, serving_fit.seconds, list_choice)
    # Last: a run is finished once this row is written, and not before (an append: a third
    # of a MERGE's time, and a new run_id cannot match a row anyway).
    writes.append_once(spark, settings, naming.literal_rows(spark, RUN_COLUMNS, [row]),
                        RUNS_TABLE, run_id, "One row per finished training run.", RUN_DOCS)
    return metrics, num_test, num_users


LIST_COLUMNS = [("run_id", "string"), ("model", "string"), ("user_id", "int"),
                ("rank", "int"), ("movie_id", "int"), ("score", "double"),
                ("source", "string")]


def top_lists(spark, fit: Fit, rated_rows, users, scale, run_id: str):
    """Each user's top N (fit.params.top_n) of the fit's movies with at least
    min_movie_ratings ratings in the fit, never a movie the user has in `rated_rows`, for
    `users` (None: every user in rated_rows): score = predicted rating (explicit) or the
    raw preference (implicit). Users without factors get most_rated_for over `rated_rows`.
    Columns LIST_COLUMNS; source is the model's name or 'most_rated'."""
    from pyspark.sql.functions import expr

    params = fit.params
    users = rated_rows.select("user_id").distinct() if users is None else users
    user_factors = fit.user_factors.join(users.selectExpr("user_id as id"), "id", "left_semi")
    movies = fit.movie_factors.where(f"num_ratings >= {params.min_movie_ratings}")
    warm = recommend_for_users(spark, user_factors, movies, params.rank, rated_rows,
                               params.top_n)
    score = clip(f"{fit.base.global_mean!r} + users.bias + warm.raw_score",
                 None if params.implicit else scale)
    name = list_model_name(params)
    warm = (warm.alias("warm")
            .join(user_factors.alias("users"), expr("warm.user_id = users.id"))
            .selectExpr("warm.user_id", "warm.rank", "warm.movie_id", f"{score} as score",
                        f"'{name}' as source"))
    cold_users = users.join(fit.user_factors.selectExpr("id as user_id"), "user_id",
                            "left_anti")
    cold = most_rated_for(cold_users, rated_rows, params.top_n) \
        .selectExpr("*", "'most_rated' as source")
    return warm.unionByName(cold).selectExpr(
        f"{naming.sql_string(run_id)} as run_id", f"'{name}' as model", "user_id", "rank",
        "movie_id", "score", "source")


# --- tuning --------------------------------------------------------------------------------------

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
    base: TrainParams = field(default_factory=TrainParams)
    objective: str = "rmse"
    alphas: tuple[float, ...] = (1.0,)
    list_base: TrainParams = LIST_DEFAULTS

    def trials(self) -> list[TrainParams]:
        """Every combination as training parameters; invalid values fail before any work."""
        if self.objective not in OBJECTIVES:
            raise ReelhouseError(f"--objective must be one of {', '.join(OBJECTIVES)}, got "
                                 f"{self.objective!r}.")
        if not self.ranks or not self.reg_params or not self.max_iters or not self.alphas:
            raise ReelhouseError("The tuning grid is empty: give at least one rank, regParam, "
                                 "maxIter and alpha.")
        _number("validation-fraction", self.validation_fraction, 0.0)
        if not 0 < self.validation_fraction < 1:
            raise ReelhouseError("--validation-fraction must be between 0 and 1 (exclusive), "
                                 f"got {self.validation_fraction!r}.")
        _whole("parallelism", self.parallelism, 1, 64)
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
TRIAL_DOCS = {
    "objective": "What the tune scored: 'rmse' (rating model) or 'ranking' (list model).",
    "validation_ndcg_at_10": "Ranking objective: NDCG@10 of the trial's lists on the validation "
                             "share, any validation rating relevant, fit movies excluded.",
    "params": "Every training parameter of the trial as JSON.",
}


def validation_split(train_rows, fraction: float, seed: int):
    """(fit rows, validation rows), both carved from the train rows only: a hash of
    (user_id, movie_id, seed, 'validation') in [0, 1) below `fraction` marks validation, so it
    does not depend on partitioning. The salt keeps it independent of the test split, which
    hashes (user_id, movie_id, seed) the same way: with the same seed and no salt, every train
    row would hash above the test fraction and the validation share would be empty."""
    draw = (f"cast(shiftrightunsigned(xxhash64(user_id, movie_id, {int(seed)}, 'validation'), "
            "11) as double) / power(2, 53)")
    marked = train_rows.selectExpr("*", f"{draw} < {fraction!r} as is_validation")
    return (marked.where("not is_validation").drop("is_validation"),
            marked.where("is_validation").drop("is_validation"))


def evaluate_trial(spark, settings: Settings, fit_rows, validation_rows, base: Baseline,
                   params: TrainParams, scale: tuple[float, float]) -> dict:
    """Fit one grid point on the fit rows; RMSE and MAE on the warm validation rows."""
    target = residuals(fit_rows, base)
    started = time.monotonic()
    model = fit_als(spark, settings, target, params)
    fit_seconds = time.monotonic() - started
    user_factors = factor_table(model.userFactors, base.user_biases, fit_rows, "", "user_id")
    movie_factors = factor_table(model.itemFactors, base.movie_biases, fit_rows, "",
                                 "movie_id")
    scored = score_pairs(validation_rows, user_factors, movie_factors, base.global_mean, scale)
    row = scored.selectExpr(*METRICS).first()
    return {"rmse": row.rmse, "mae": row.mae, "rows": row.num_rows, "fit_seconds": fit_seconds}


def ranking_trials(spark, settings: Settings, tune_id: str, fit_rows, validation_rows,
                   trials: list[tuple[str, TrainParams]], scale, parallelism: int,
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
            fit = fit_model(spark, settings, fit_rows, params, trial_id, f"trial {trial_id}",
                            own)
            # one run (the tune) whose models are the trials: the baselines are made once
            lists = top_lists(spark, fit, fit_rows, users, scale, trial_id).selectExpr(
                f"{naming.sql_string(tune_id)} as run_id", "run_id as model", "user_id",
                "rank", "movie_id", "score", "false as served"
            ).localCheckpoint()  # materialised, cut from the fit
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
    from pipelines import rendering, sql_project

    project = sql_project.load_project(settings)
    query = rendering.render_query(project, "tune_ranking", (
        "{{ ranking_metrics_query('__tune_lists', '__tune_split', '" + str(RANKING_K) + "', "
        "var('relevance_threshold', 4.0), var('bayesian_prior_weight', 10)) }}"))
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
    versions = input_versions(spark, settings)
    tuned_at = datetime.now(UTC)
    tune_id = new_run_id(tuned_at)
    trial_ids = [f"{tune_id}-{index + 1:03d}" for index in range(len(trials))]
    split = _read(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating")
    fit_rows, validation_rows = validation_split(train_rows, grid.validation_fraction, grid.seed)
    cached = [fit_rows.cache(), validation_rows.cache()]
    try:
        scale = _rating_scale(spark, _read(spark, settings, "ratings", versions))
        num_fit, num_validation = fit_rows.count(), validation_rows.count()
        if num_validation == 0 or num_fit == 0:
            raise ReelhouseError(f"The validation split left {num_fit:,} rows to fit and "
                                 f"{num_validation:,} to score: change --validation-fraction.")
        progress.say(f"tune {tune_id}: {len(trials)} trials ({grid.objective}) on {num_fit:,} "
                     f"fit rows, {num_validation:,} validation rows, {grid.parallelism} at a "
                     "time")
        with run_checkpoints(spark, settings, tune_id):
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
                        TRIALS_TABLE, tune_id, "One row per tuning trial (reelhouse tune).",
                        TRIAL_DOCS)
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
    base = baseline(spark, fit_rows, trials[0])
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


def best_list_params(spark, settings: Settings) -> tuple[TrainParams, str] | None:
    """The list model of the highest validation NDCG@10 in the latest ranking tune, and why
    (None before any ranking tune)."""
    registration.register_warehouse(spark, settings)
    best = _best_trial(spark, settings, "ranking")
    if best is None:
        return None
    params = TrainParams(**json.loads(best.params))
    return params, (f"best of tune {best.tune_id} (validation NDCG@{RANKING_K} "
                    f"{best.validation_ndcg_at_10:.4f})")
