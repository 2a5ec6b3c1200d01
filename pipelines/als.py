"""The ALS maths both models share: the training parameters and their checks, what implicit
ALS learns from a rating, the bias baseline and the residuals explicit ALS learns, the fit,
the factor tables a run publishes, scoring pairs and the accuracy metrics.

The rating model is explicit bias-centred ALS: the global mean and damped movie and user
biases are computed in SQL and ALS learns the residuals; an estimate is global mean + user
bias + movie bias + user factors . movie factors. The list model is implicit-feedback ALS by
default (LIST_DEFAULTS): ratings as confidence (Hu, Koren, Volinsky 2008).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, replace

from pipelines import naming, progress, rendering, session, sql_project
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings


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
        check_whole("rank", self.rank, 1, 1000)
        check_whole("max-iter", self.max_iter, 1, 1000)
        check_whole("seed", self.seed, -2**31, 2**31 - 1)
        check_whole("top-n", self.top_n, 1, 1000)
        check_whole("min-movie-ratings", self.min_movie_ratings, 1, 2**31 - 1)
        check_whole("checkpoint-interval", self.checkpoint_interval, 1, 1000)
        check_number("reg-param", self.reg_param, 0.0)
        check_number("alpha", self.alpha, 0.0)
        check_number("user-bias-damping", self.user_bias_damping, 0.0)
        check_number("movie-bias-damping", self.movie_bias_damping, 0.0)
        check_number("confidence-threshold", self.confidence_threshold, 0.0)
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


def check_whole(name: str, value, low: int, high: int) -> None:
    """A ReelhouseError naming the option `--name` unless `value` is a whole number in
    [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ReelhouseError(f"--{name} must be a whole number from {low} to {high}, "
                             f"got {value!r}.")


def check_number(name: str, value, low: float) -> None:
    """A ReelhouseError naming the option `--name` unless `value` is a finite number >= low."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < low):
        raise ReelhouseError(f"--{name} must be a finite number >= {low:g}, got {value!r}.")


def rating_scale(ratings) -> tuple[float, float]:
    """(lowest, highest) rating: estimates are clipped to the dataset's own scale (0.5-5 or
    1-5). One small aggregate."""
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


BASELINE_INPUTS = [("global_mean_rating", "double"), ("movie_bias_damping", "double"),
                   ("user_bias_damping", "double")]


def baseline(spark, settings: Settings, train_rows, params: TrainParams) -> Baseline:
    """Global mean, then damped movie biases, then damped user biases on what the movie
    biases leave: the macros of sql/macros/biases.sql, which test_predictions' baseline uses
    too. One scalar is collected, the mean; a literal from then on."""
    if not params.bias_centred:
        return Baseline(0.0)
    project = sql_project.load_project(settings)

    def query(name: str, macro_call: str):
        return spark.sql(rendering.render_query(project, name, "{{ " + macro_call + " }}"))

    train_rows.createOrReplaceTempView("__train_bias_rows")
    mean = query("train_global_mean", "global_mean_rating('__train_bias_rows')").first()[0]
    if mean is None:
        raise ReelhouseError("There are no train rows in movielens.ratings_split to fit on.")
    naming.literal_rows(spark, BASELINE_INPUTS, [
        (float(mean), float(params.movie_bias_damping), float(params.user_bias_damping)),
    ]).createOrReplaceTempView("__train_baseline_inputs")
    movie_biases = query("train_movie_biases", "damped_movie_biases('__train_bias_rows', "
                         "'__train_baseline_inputs')") \
        .selectExpr("movie_id", "movie_bias as bias").cache()
    movie_biases.selectExpr("movie_id", "bias as movie_bias") \
        .createOrReplaceTempView("__train_movie_biases")
    user_biases = query("train_user_biases", "damped_user_biases('__train_bias_rows', "
                        "'__train_movie_biases', '__train_baseline_inputs')") \
        .selectExpr("user_id", "user_bias as bias").cache()
    return Baseline(float(mean), user_biases, movie_biases)


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
    blocks = session.parallelism(spark)
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
        base = baseline(spark, settings, rows, params)
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

