"""`reelhouse train` and `reelhouse tune`: fit Spark MLlib ALS on the train rows of
movielens.ratings_split and publish what analysts query.

One training run, read top to bottom in `train`:
1. check the parameters (a bad value fails here, before any table is touched), then put back
   any output table that a killed earlier run left half-written (`recover_interrupted`);
2. read the inputs at fixed Delta versions, recorded on the run, so a rebuild in another
   process cannot change the data halfway through;
3. bias-centred runs (the default, see DEFAULTS_EVIDENCE): the global mean and damped movie
   and user biases are computed in SQL and ALS learns the residuals; a prediction is
   global mean + user bias + movie bias + user factors . movie factors;
4. write user_factors, movie_factors, predictions, recommendations and similar_movies, one
   Delta commit each;
5. write the model_runs row last, with the Delta version of every table the run wrote.
If anything in 2-5 fails, every output table goes back to its version before the run, so the
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

from pipelines import catalog, progress
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

INPUT_TABLES = ("ratings_split", "movie_stats", "ratings")
OUTPUT_TABLES = ("user_factors", "movie_factors", "predictions", "recommendations",
                 "similar_movies")
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
    alpha: float = 1.0  # implicit mode only: confidence = 1 + alpha * rating (Hu et al.)
    implicit: bool = False
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
        version = catalog.current_version(spark, settings, table)
        if version is None:
            raise ReelhouseError(f"{catalog.qualified(settings, table)} does not exist: run "
                                 "`reelhouse run` (or `reelhouse build`) before training.")
        versions[table] = version
    return versions


def _read(spark, settings: Settings, table: str, versions: dict[str, int]):
    return spark.sql(f"select * from {catalog.qualified(settings, table)} "
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


def residuals(train_rows, base: Baseline):
    """The value ALS learns for each train rating: the rating less the baseline."""
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
    return df.selectExpr(f"{catalog.sql_string(run_id)} as run_id", "id", "factors",
                         "coalesce(bias, 0.0) as bias", "coalesce(num_ratings, 0) as num_ratings")


DOT = ("aggregate(zip_with(users.factors, movies.factors, (u, m) -> cast(u as double) * m), "
       "cast(0 as double), (total, x) -> total + x)")


def score_pairs(pairs, user_factors, movie_factors, global_mean: float,
                scale: tuple[float, float] | None):
    """Predicted ratings for (user_id, movie_id, …) pairs whose user and movie both have
    factors, clipped to the rating scale (scale None: the raw score, for implicit models)."""
    from pyspark.sql.functions import expr

    raw = f"{global_mean!r} + users.bias + movies.bias + {DOT}"
    return (pairs.alias("pairs")
            .join(user_factors.alias("users"), expr("pairs.user_id = users.id"))
            .join(movie_factors.alias("movies"), expr("pairs.movie_id = movies.id"))
            .selectExpr("pairs.*", f"{clip(raw, scale)} as prediction"))


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
    return ALSModel(java_model)


# --- what a run publishes ------------------------------------------------------------------

def recommend_for_users(spark, user_factors, movie_factors, rank: int, train_rows,
                        top_n: int, cached: list):
    """Top N movies of movie_factors (the candidates) that the user did not rate in train,
    for every user with factors: (user_id, rank, movie_id, raw_score), raw_score = movie bias
    + factors . factors (the user's own bias and the global mean do not change the order).
    MLlib's top-k does not know what a user rated, so ask for N + k, drop rated movies, and
    ask again with a 4x bigger k for the users left short; a user is done once
    k >= N + their number of rated movies, which guarantees N unrated ones.
    DataFrames cached on the way are appended to `cached` for the caller to release."""
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
                .cache())
        got = kept.groupBy("user_id").count().withColumnRenamed("count", "num_kept")
        short = (pending.join(rated_counts, "user_id", "left")
                 .join(got, "user_id", "left")
                 .where(f"coalesce(num_kept, 0) < {top_n} "
                        f"and coalesce(num_rated, 0) + {top_n} > {ask}")
                 .select("user_id"))
        if ask >= num_movies:
            short = short.limit(0)
        short = short.cache()
        cached += [kept, short]
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


def popular_for_cold_users(ratings, user_factors, movie_stats, top_n: int):
    """Users in ratings without factors (none of their ratings is in train) get the top N
    movies by bayesian_avg; having no train ratings, they rated none of them in train."""
    cold_users = (ratings.select("user_id").distinct()
                  .join(user_factors.selectExpr("id as user_id"), "user_id", "left_anti"))
    popular = (movie_stats.where("num_ratings > 0 and bayesian_avg is not null")
               .orderBy("bayesian_avg", "num_ratings", "movie_id",
                        ascending=[False, False, True])
               .limit(top_n)
               .selectExpr("movie_id", "bayesian_avg as score",
                           "row_number() over (order by bayesian_avg desc, num_ratings desc, "
                           "movie_id) as rank"))
    return cold_users.crossJoin(popular).select("user_id", "rank", "movie_id", "score")


# --- runs: recording, recovering ----------------------------------------------------------

RUN_COLUMNS = [
    ("run_id", "string"), ("started_at", "timestamp"), ("finished_at", "timestamp"),
    ("params", "string"), ("global_mean", "double"), ("rating_scale_min", "double"),
    ("rating_scale_max", "double"), ("train_rows", "bigint"), ("test_rows", "bigint"),
    ("prediction_rows", "bigint"), ("cold_start_rows", "bigint"),
    ("recommended_users", "bigint"), ("fit_seconds", "double"), ("total_seconds", "double"),
    ("rmse", "double"), ("mae", "double"), ("input_versions", "map<string, bigint>"),
    ("output_versions", "map<string, bigint>"), ("model_path", "string"),
]
RUN_DOCS = {
    "run_id": "The training run: <UTC start time>-<random suffix>, sortable by time.",
    "params": "Every training parameter as JSON (rank, max_iter, reg_param, bias_centred, …).",
    "global_mean": "Mean train rating of a bias-centred run (0 for plain and implicit runs).",
    "cold_start_rows": "Test rows left out of predictions: user or movie unseen in training.",
    "fit_seconds": "Wall time of ALS.fit.",
    "rmse": "Root mean squared error of predictions on the test rows (null for implicit).",
    "mae": "Mean absolute error of predictions on the test rows (null for implicit).",
    "input_versions": "Delta version of each input table the run read.",
    "output_versions": "Delta version of each output table the run wrote (for time travel).",
    "model_path": "Where the MLlib model was saved (ALSModel.load reads it).",
}


def latest_run(spark, settings: Settings):
    """The newest model_runs row, or None before the first run."""
    if catalog.current_version(spark, settings, RUNS_TABLE) is None:
        return None
    return (spark.table(catalog.qualified(settings, RUNS_TABLE))
            .orderBy("finished_at", "run_id", ascending=False).first())


def recover_interrupted(spark, settings: Settings) -> dict[str, int | None]:
    """An output table holding rows of a run that is not the latest in model_runs was written
    by a run that never finished (killed before it could restore it): put it back to the
    version the latest model_runs row names (or drop it if no run ever finished). Returns
    each output table's version afterwards (None: absent)."""
    catalog.register_warehouse(spark, settings)
    last = latest_run(spark, settings)
    expected = dict(last.output_versions or {}) if last is not None else {}
    versions = {table: catalog.current_version(spark, settings, table) for table in OUTPUT_TABLES}
    moved = [table for table, version in versions.items()
             if version is not None and version != expected.get(table)]
    fixed = moved
    if last is not None and moved:  # a restored table is moved but holds the last run's rows
        with ThreadPoolExecutor(max_workers=len(moved)) as pool:  # one-row reads, overlapped
            writers = list(pool.map(lambda t: _written_by(spark, settings, t), moved))
        fixed = [t for t, writer in zip(moved, writers, strict=True) if writer != last.run_id]
    failures = catalog.restore_all(spark, settings, {t: expected.get(t) for t in fixed})
    if failures:
        raise ReelhouseError("Could not put back the output tables of an unfinished train: " +
                             "; ".join(f"{t}: {e}" for t, e in failures.items()))
    versions.update({table: catalog.current_version(spark, settings, table) for table in fixed})
    if fixed:
        progress.say(f"an earlier train did not finish: put {', '.join(fixed)} back as the "
                     f"last finished run ({last.run_id if last else 'none'}) left them")
    return versions


def _written_by(spark, settings: Settings, table: str) -> str | None:
    """The run whose rows a table holds (one row read; None when it is empty). A restored
    table has a new Delta version but the old run's rows, so the run_id is what tells."""
    row = spark.sql(f"select run_id from {catalog.qualified(settings, table)} limit 1").first()
    return row.run_id if row is not None else None


def _rollback(spark, settings: Settings, before: dict[str, int | None], model_path: str):
    progress.say("train failed: putting the output tables back to their versions before it")
    for table, error in catalog.restore_all(spark, settings, before).items():
        # the others are restored; the next train repairs this one (recover_interrupted)
        progress.say(f"could not restore {table} to version {before[table]}: {error}")
    try:
        catalog.delete_path(spark, model_path)
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
            catalog.delete_path(spark, folder)
        except Exception as exc:  # leftover checkpoints waste space but harm nothing
            progress.say(f"could not delete the checkpoints in {folder}: {exc}")


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _publish(spark, settings: Settings, df, table: str, comment: str) -> int:
    """Replace an output table in one Delta commit; returns the version written."""
    spark.sparkContext.setJobDescription(f"write {catalog.qualified(settings, table)}")
    try:
        with progress.step(f"write {catalog.qualified(settings, table)}") as step:
            catalog.replace_table(spark, settings, df, table, comment)
            rows = catalog.rows_in_last_commit(spark, settings, table)
            step["result"] = f"{rows:,} rows" if rows is not None else ""
    finally:
        spark.sparkContext.setJobDescription(None)
    return catalog.current_version(spark, settings, table)


def train(spark, settings: Settings, params: TrainParams | None = None) -> str:
    """Fit, publish every output table, record the run; returns its run_id."""
    params = (params or TrainParams()).validated()
    catalog.register_warehouse(spark, settings)  # the inputs are read by name
    versions = input_versions(spark, settings)
    before = recover_interrupted(spark, settings)
    started_at = datetime.now(UTC)
    clock = time.monotonic()
    run_id = new_run_id(started_at)
    model_path = f"{settings.warehouse}/_models/{run_id}"
    cached: list = []
    try:
        with run_checkpoints(spark, settings, run_id):
            metrics, num_test, num_users = _train_and_publish(
                spark, settings, params, versions, run_id, started_at, clock, model_path,
                cached)
    except BaseException:
        _rollback(spark, settings, before, model_path)
        raise
    finally:
        for df in cached:
            df.unpersist()
    rmse = "n/a (implicit)" if params.implicit else f"{metrics.rmse:.4f}"
    progress.say(f"run {run_id}: test RMSE {rmse} on {metrics.num_rows:,} rows "
                 f"({num_test - metrics.num_rows:,} cold-start rows left out), "
                 f"recommendations for {num_users:,} users")
    return run_id


def _train_and_publish(spark, settings: Settings, params: TrainParams, versions: dict,
                       run_id: str, started_at: datetime, clock: float, model_path: str,
                       cached: list):
    """Steps 2-5 of the module docstring; returns (metrics row, test rows, users)."""
    split = _read(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating") \
        .cache()
    test_rows = split.where("split = 'test'").select("user_id", "movie_id", "rating")
    cached.append(train_rows)
    scale = _rating_scale(spark, _read(spark, settings, "ratings", versions))
    with progress.step(f"train {run_id}: ALS rank {params.rank}, regParam "
                       f"{params.reg_param}, {params.max_iter} iterations"
                       f"{', bias-centred' if params.bias_centred else ''}"
                       f"{', implicit' if params.implicit else ''}") as step:
        base = baseline(spark, train_rows, params)
        cached += [df for df in (base.user_biases, base.movie_biases) if df is not None]
        target = residuals(train_rows, base).cache()
        cached.append(target)
        train_count = target.count()  # materialises the cache before the fit is timed
        if train_count == 0:
            raise ReelhouseError("There are no train rows in movielens.ratings_split.")
        fit_started = time.monotonic()
        model = fit_als(spark, settings, target, params)
        fit_seconds = time.monotonic() - fit_started
        step["result"] = f"{train_count:,} train rows, fit {fit_seconds:.1f}s"

    user_factors = factor_table(model.userFactors, base.user_biases, train_rows, run_id,
                                "user_id").cache()
    movie_factors = factor_table(model.itemFactors, base.movie_biases, train_rows, run_id,
                                 "movie_id").cache()
    cached += [user_factors, movie_factors]
    rating_scale = None if params.implicit else scale
    predictions = score_pairs(test_rows, user_factors, movie_factors, base.global_mean,
                              rating_scale).selectExpr(
        f"{catalog.sql_string(run_id)} as run_id", "user_id", "movie_id", "rating",
        "prediction").cache()
    cached.append(predictions)
    results: dict = {}

    def recommendations():
        results["recommendations"] = all_recommendations(
            spark, settings, versions, run_id, params, train_rows, user_factors, movie_factors,
            base.global_mean, rating_scale, cached).cache()
        cached.append(results["recommendations"])
        return results["recommendations"]

    outputs_to_write = {  # table: (rows, comment); rows may be a function computing them
        "user_factors": (user_factors, "ALS user factors and damped user bias of the latest "
                         "run."),
        "movie_factors": (movie_factors, "ALS movie factors and damped movie bias of the "
                          "latest run."),
        "predictions": (predictions, "Predicted rating of every test row whose user and "
                        "movie were seen in training (latest run)."),
        "recommendations": (recommendations, "Top N movies per user not rated in train "
                            "(latest run); source 'als', or 'popularity' for users the model "
                            "cannot score."),
        "similar_movies": (lambda: similar_movies(
            spark, movie_factors, params.rank, params.top_n, params.min_movie_ratings)
            .selectExpr(f"{catalog.sql_string(run_id)} as run_id", "*"),
            "Top N movies by cosine similarity of ALS factors (latest run)."),
    }

    def write(table: str) -> int:
        rows, comment = outputs_to_write[table]
        return _publish(spark, settings, rows() if callable(rows) else rows, table, comment)

    # The five tables are independent: written side by side, each in its own Delta commit,
    # so Spark's scheduling gaps and commit latency of one overlap the work of another.
    with ThreadPoolExecutor(max_workers=max(1, settings.threads),
                            thread_name_prefix="reelhouse-publish") as pool:
        futures = {table: pool.submit(write, table) for table in OUTPUT_TABLES}
    outputs = {table: future.result() for table, future in futures.items()}
    recommendations = results["recommendations"]

    model.write().overwrite().save(model_path)
    metrics = predictions.selectExpr(*METRICS).first()
    num_test = test_rows.count()
    num_users = recommendations.select("user_id").distinct().count()
    implicit = params.implicit
    row = (run_id, started_at, datetime.now(UTC), json.dumps(asdict(params), sort_keys=True),
           base.global_mean, scale[0], scale[1], train_count, num_test, metrics.num_rows,
           num_test - metrics.num_rows, num_users, fit_seconds, time.monotonic() - clock,
           None if implicit else metrics.rmse, None if implicit else metrics.mae,
           versions, outputs, model_path)
    # Last: a run is finished once this row is written, and not before (an append: a third
    # of a MERGE's time, and a new run_id cannot match a row anyway).
    catalog.append_once(spark, settings, catalog.literal_rows(spark, RUN_COLUMNS, [row]),
                        RUNS_TABLE, run_id, "One row per finished training run.", RUN_DOCS)
    return metrics, num_test, num_users


def all_recommendations(spark, settings: Settings, versions: dict[str, int], run_id: str,
                        params: TrainParams, train_rows, user_factors, movie_factors,
                        global_mean: float, scale, cached: list):
    """recommendations as published: ALS's top N for users with factors (score = predicted
    rating), the popularity fallback for the rest."""
    from pyspark.sql.functions import expr

    candidates = movie_factors.where(f"num_ratings >= {params.min_movie_ratings}")
    warm = recommend_for_users(spark, user_factors, candidates, params.rank, train_rows,
                               params.top_n, cached)
    score = clip(f"{global_mean!r} + users.bias + warm.raw_score", scale)
    warm = (warm.alias("warm")
            .join(user_factors.alias("users"), expr("warm.user_id = users.id"))
            .selectExpr("warm.user_id", "warm.rank", "warm.movie_id", f"{score} as score",
                        "'als' as source"))
    cold = popular_for_cold_users(_read(spark, settings, "ratings", versions), user_factors,
                                  _read(spark, settings, "movie_stats", versions), params.top_n)
    return warm.unionByName(cold.selectExpr("*", "'popularity' as source")).selectExpr(
        f"{catalog.sql_string(run_id)} as run_id", "user_id", "rank", "movie_id", "score",
        "source")


# --- tuning --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TuneGrid:
    ranks: tuple[int, ...] = (10, 20, 30, 50)
    reg_params: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2)
    max_iters: tuple[int, ...] = (15,)
    bias_centred: bool = True
    validation_fraction: float = 0.2
    seed: int = 42
    parallelism: int = 2
    base: TrainParams = field(default_factory=TrainParams)

    def trials(self) -> list[TrainParams]:
        """Every combination as training parameters; invalid values fail before any work."""
        if not self.ranks or not self.reg_params or not self.max_iters:
            raise ReelhouseError("The tuning grid is empty: give at least one rank, regParam "
                                 "and maxIter.")
        _number("validation-fraction", self.validation_fraction, 0.0)
        if not 0 < self.validation_fraction < 1:
            raise ReelhouseError("--validation-fraction must be between 0 and 1 (exclusive), "
                                 f"got {self.validation_fraction!r}.")
        _whole("parallelism", self.parallelism, 1, 64)
        trials = [replace(self.base, rank=rank, reg_param=reg, max_iter=iters,
                          bias_centred=self.bias_centred, implicit=False, seed=self.seed)
                  for rank in self.ranks for reg in self.reg_params for iters in self.max_iters]
        return [t.validated() for t in trials]


TRIAL_COLUMNS = [
    ("trial_id", "string"), ("tune_id", "string"), ("tuned_at", "timestamp"), ("rank", "int"),
    ("reg_param", "double"), ("max_iter", "int"), ("bias_centred", "boolean"),
    ("user_bias_damping", "double"), ("movie_bias_damping", "double"), ("seed", "int"),
    ("validation_fraction", "double"), ("fit_rows", "bigint"), ("validation_rows", "bigint"),
    ("validation_cold_rows", "bigint"), ("validation_rmse", "double"),
    ("validation_mae", "double"), ("fit_seconds", "double"),
    ("input_versions", "map<string, bigint>"),
]


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


def tune(spark, settings: Settings, grid: TuneGrid | None = None) -> str:
    """Fit every grid point on the train rows less a validation share, score each on that
    share, and record every trial in model_trials in one commit; returns the tune_id. Trials
    run `parallelism` at a time, each a Spark job submitted from its own thread."""
    grid = grid or TuneGrid()
    trials = grid.trials()
    catalog.register_warehouse(spark, settings)  # the inputs are read by name
    versions = input_versions(spark, settings)
    tuned_at = datetime.now(UTC)
    tune_id = new_run_id(tuned_at)
    split = _read(spark, settings, "ratings_split", versions)
    train_rows = split.where("split = 'train'").select("user_id", "movie_id", "rating")
    fit_rows, validation_rows = validation_split(train_rows, grid.validation_fraction, grid.seed)
    cached = [fit_rows.cache(), validation_rows.cache()]
    try:
        scale = _rating_scale(spark, _read(spark, settings, "ratings", versions))
        base = baseline(spark, fit_rows, trials[0])
        cached += [df for df in (base.user_biases, base.movie_biases) if df is not None]
        num_fit, num_validation = fit_rows.count(), validation_rows.count()
        if num_validation == 0 or num_fit == 0:
            raise ReelhouseError(f"The validation split left {num_fit:,} rows to fit and "
                                 f"{num_validation:,} to score: change --validation-fraction.")
        progress.say(f"tune {tune_id}: {len(trials)} trials on {num_fit:,} fit rows, "
                     f"{num_validation:,} validation rows, {grid.parallelism} at a time")

        def run_trial(index_params):
            index, params = index_params
            result = evaluate_trial(spark, settings, fit_rows, validation_rows, base, params,
                                    scale)
            progress.say(f"  trial {index + 1}/{len(trials)}: rank {params.rank}, regParam "
                         f"{params.reg_param}, maxIter {params.max_iter}: validation RMSE "
                         f"{result['rmse']:.4f} (fit {result['fit_seconds']:.1f}s)")
            return index, params, result

        with run_checkpoints(spark, settings, tune_id), \
                ThreadPoolExecutor(max_workers=grid.parallelism) as pool:
            results = sorted(pool.map(run_trial, enumerate(trials)), key=lambda r: r[0])
    finally:
        for df in cached:
            df.unpersist()
    rows = [(f"{tune_id}-{index + 1:03d}", tune_id, tuned_at, p.rank, float(p.reg_param),
             p.max_iter, p.bias_centred, float(p.user_bias_damping),
             float(p.movie_bias_damping), p.seed, float(grid.validation_fraction), num_fit,
             num_validation, num_validation - r["rows"], r["rmse"], r["mae"],
             r["fit_seconds"], versions) for index, p, r in results]
    catalog.merge_into(spark, settings, catalog.literal_rows(spark, TRIAL_COLUMNS, rows),
                       TRIALS_TABLE, ["trial_id"], "One row per tuning trial (reelhouse tune).")
    best = min(results, key=lambda r: r[2]["rmse"])
    progress.say(f"best: rank {best[1].rank}, regParam {best[1].reg_param}, maxIter "
                 f"{best[1].max_iter}, validation RMSE {best[2]['rmse']:.4f}; train with it: "
                 "reelhouse train --params best")
    return tune_id


def best_params(spark, settings: Settings) -> dict:
    """rank, reg_param, max_iter, bias_centred and seed of the lowest validation RMSE in the
    latest tune (trials of different tunes saw different data, so they are not compared)."""
    catalog.register_warehouse(spark, settings)
    if catalog.current_version(spark, settings, TRIALS_TABLE) is None:
        raise ReelhouseError("There are no tuning trials yet: run `reelhouse tune` before "
                             "`reelhouse train --params best`.")
    best = spark.sql(f"""
        with trials as (select * from {catalog.qualified(settings, TRIALS_TABLE)}),
        latest as (select max_by(tune_id, tuned_at) as tune_id from trials)
        select trials.* from trials join latest on trials.tune_id = latest.tune_id
        where validation_rmse is not null
        order by validation_rmse, trial_id limit 1""").first()
    if best is None:
        raise ReelhouseError("The latest tune has no scored trial: run `reelhouse tune` again.")
    return {"rank": best.rank, "reg_param": best.reg_param, "max_iter": best.max_iter,
            "bias_centred": best.bias_centred, "user_bias_damping": best.user_bias_damping,
            "movie_bias_damping": best.movie_bias_damping, "seed": best.seed}
