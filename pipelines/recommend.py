"""`reelhouse recommend`: a known user's top N from the latest run's `recommendations`, or a
new user's top N folded in against the latest run's `movie_factors` without retraining.

Fold-in solves the same regularised least-squares problem ALS solves for every user in its
last half-iteration, with the movie factors held fixed:
    (QᵀQ + λ·n·I) p = Qᵀ (r − μ − b_movie − b_user)
Q holds the factors of the n movies the user rated, λ·n is Spark's scaled regularisation
(ALS-WR), and for bias-centred runs μ is the global mean and b_user the damped user bias,
estimated from the same formula training used. So a train user folded in with their own
train ratings gets back (to float precision) the factors ALS gave them. Implicit runs solve
Hu et al.'s weighted problem instead; nonnegative runs a nonnegative least squares.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipelines import als, model_runs, naming, progress, registration
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

MAX_FILE_RATINGS = 10_000


def _latest_run(spark, settings: Settings):
    registration.register_warehouse(spark, settings)
    run = model_runs.latest_run(spark, settings)
    if run is None:
        raise ReelhouseError("No model has been trained yet: run `reelhouse train` (or "
                             "`reelhouse run`) first.")
    return run


def serving_params(run) -> dict:
    """The parameters of the model behind movie_factors and recommendations: the list model
    (runs before it existed served the rating model)."""
    if "list_params" in run.__fields__ and run.list_params:
        return json.loads(run.list_params)
    return json.loads(run.params)


def _check_top_n(top_n) -> int:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= 1000:
        raise ReelhouseError(f"--top-n must be a whole number from 1 to 1000, got {top_n!r}.")
    return top_n


def _with_titles(spark, settings: Settings, df):
    movies = spark.table(naming.qualified(settings, "movies")) \
        .select("movie_id", "title", "year", "genres")
    return df.join(movies, "movie_id", "left")


# --- a known user ----------------------------------------------------------------------------

def for_user(spark, settings: Settings, user_id: int, top_n: int | None = None):
    """The user's top N from the latest run, with titles, years and genres, best first."""
    run = _latest_run(spark, settings)
    stored = serving_params(run)["top_n"]
    top_n = stored if top_n is None else _check_top_n(top_n)
    if top_n > stored:
        raise ReelhouseError(f"The latest run kept {stored} recommendations per user: ask for "
                             f"at most {stored}, or run `reelhouse train --top-n {top_n}`.")
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise ReelhouseError(f"--user takes a whole-number user id, got {user_id!r}.")
    # The version the latest finished run wrote: a train running now (or killed) may have
    # replaced the table since, with a run not finished.
    recommendations = spark.sql(f"""
        select rank, movie_id, score, source
        from {naming.qualified(settings, 'recommendations')}
        version as of {int(run.output_versions['recommendations'])}
        where user_id = {int(user_id)} and rank <= {int(top_n)}""")
    result = _with_titles(spark, settings, recommendations).orderBy("rank")
    if result.isEmpty():
        known = spark.sql(f"select 1 from {naming.qualified(settings, 'ratings')} "
                          f"where user_id = {int(user_id)} limit 1").first()
        if known is None:
            raise ReelhouseError(f"User {user_id} is not in movielens.ratings: pick a user id "
                                 "from there, or pass a new user's ratings with --ratings FILE.")
        raise ReelhouseError(f"User {user_id} has no recommendations in the latest run "
                             f"({run.run_id}): run `reelhouse train` again.")
    return result.select("rank", "movie_id", "title", "year", "genres", "score", "source")


# --- a new user ------------------------------------------------------------------------------

def read_ratings_file(path: Path) -> list[tuple[int, float]]:
    """A new user's ratings: CSV lines `movie_id,rating`, an optional header line, blank
    lines and #-comments skipped. Any other line is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise ReelhouseError(f"{path} is not a file: pass a CSV of movie_id,rating lines.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReelhouseError(f"{path} is not UTF-8 text: save it as a CSV of movie_id,rating "
                             "lines.") from exc
    ratings: dict[int, float] = {}
    seen_data = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip().strip('"') for f in stripped.split(",")]
        if not seen_data and not _is_number(fields[0]):
            seen_data = True  # a header: whatever its names, the columns are movie_id,rating
            continue
        seen_data = True
        where = f"line {number} of {path.name}"
        if len(fields) != 2:
            raise ReelhouseError(f"{where} has {len(fields)} fields, expected movie_id,rating: "
                                 f"{stripped[:80]!r}.")
        movie_text, rating_text = fields
        if not movie_text.isdigit() or not 0 < int(movie_text) < 2**31:
            raise ReelhouseError(f"{where}: movie id {movie_text!r} is not a positive whole "
                                 "number.")
        if not _is_number(rating_text):
            raise ReelhouseError(f"{where}: rating {rating_text!r} is not a number.")
        movie_id, rating = int(movie_text), float(rating_text)
        if movie_id in ratings:
            raise ReelhouseError(f"{where}: movie {movie_id} is rated twice; keep one line.")
        ratings[movie_id] = rating
        if len(ratings) > MAX_FILE_RATINGS:
            raise ReelhouseError(f"{path.name} has more than {MAX_FILE_RATINGS:,} ratings.")
    if not ratings:
        raise ReelhouseError(f"{path.name} has no ratings: write one movie_id,rating per line.")
    return sorted(ratings.items())


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def solve_user(factors: np.ndarray, targets: np.ndarray, reg_param: float,
               nonnegative: bool = False) -> np.ndarray:
    """Explicit ALS's user step for one user: argmin ‖Q p − t‖² + λ·n·‖p‖²."""
    n, rank = factors.shape
    gram = factors.T @ factors + reg_param * n * np.eye(rank)
    return _solve(gram, factors.T @ targets, nonnegative)


def solve_user_implicit(factors: np.ndarray, ratings: np.ndarray, all_gram: np.ndarray,
                        reg_param: float, alpha: float, nonnegative: bool = False):
    """Implicit ALS's user step (Hu, Koren, Volinsky 2008) as Spark solves it: preference 1
    for each rated movie with confidence 1 + α·r, preference 0 with confidence 1 for every
    other movie (that is YᵀY over all movies), regularisation λ·n, n the movies with r > 0
    (a 0, such as a rating under the confidence threshold, counts as not rated)."""
    rank = factors.shape[1]
    n = int(np.count_nonzero(ratings > 0))
    confidence = 1.0 + alpha * np.abs(ratings)
    gram = all_gram + factors.T @ ((confidence - 1.0)[:, None] * factors) \
        + reg_param * n * np.eye(rank)
    rhs = factors.T @ np.where(ratings > 0, confidence, 0.0)
    return _solve(gram, rhs, nonnegative)


def _solve(gram: np.ndarray, rhs: np.ndarray, nonnegative: bool) -> np.ndarray:
    if not nonnegative:
        return np.linalg.solve(gram, rhs)
    # Nonnegative least squares by cyclic coordinate descent on the normal equations (the
    # problem is small and strictly convex once regularised).
    p = np.zeros_like(rhs)
    for _ in range(500):
        previous = p.copy()
        for i in range(len(p)):
            residual = rhs[i] - gram[i] @ p + gram[i, i] * p[i]
            p[i] = max(0.0, residual / gram[i, i])
        if np.max(np.abs(p - previous)) < 1e-10:
            break
    return p


def _movie_gram(spark, movie_factors, rank: int) -> np.ndarray:
    """YᵀY over every movie's factors, summed in Spark (rank² numbers come back)."""
    movie_factors.createOrReplaceTempView("__fold_in_movie_factors")
    rows = spark.sql("""
        select i, j, sum(cast(factors[i] as double) * factors[j]) as value
        from __fold_in_movie_factors
        lateral view posexplode(factors) as i, fi
        lateral view posexplode(factors) as j, fj
        group by i, j""").collect()
    gram = np.zeros((rank, rank))
    for row in rows:
        gram[row.i, row.j] = row.value
    return gram


def fold_in(spark, settings: Settings, ratings: list[tuple[int, float]], top_n: int = 10):
    """Top N movies for a new user with these ratings, from the latest run's movie factors:
    (rank, movie_id, title, year, genres, score), never a movie the user rated."""
    top_n = _check_top_n(top_n)
    run = _latest_run(spark, settings)
    params = serving_params(run)
    low, high = run.rating_scale_min, run.rating_scale_max
    for movie_id, rating in ratings:
        if not low <= rating <= high:
            raise ReelhouseError(f"Movie {movie_id} is rated {rating:g}, outside this dataset's "
                                 f"scale {low:g}-{high:g}.")
    movies = spark.table(naming.qualified(settings, "movies")).select("movie_id")
    movie_factors = spark.sql(
        f"select id, factors, bias, num_ratings "
        f"from {naming.qualified(settings, 'movie_factors')} "
        f"version as of {int(run.output_versions['movie_factors'])}")
    given = naming.literal_rows(spark, [("movie_id", "int"), ("rating", "double")], ratings)
    if params["implicit"]:  # what the list model learnt from a rating, as in training
        value = als.implicit_value_sql(als.TrainParams(**params))
        given = given.selectExpr("movie_id", f"cast({value} as double) as rating")
    missing = [r.movie_id for r in given.join(movies, "movie_id", "left_anti")
               .orderBy("movie_id").limit(5).collect()]
    if missing:
        raise ReelhouseError(f"Movie {missing[0]} is not in movielens.movies: check the ids "
                             f"in the ratings file (unknown: {', '.join(map(str, missing))}).")
    # One row per rated movie the model knows: as many as the user gave, small by nature.
    known = (given.join(movie_factors.withColumnRenamed("id", "movie_id"), "movie_id")
             .orderBy("movie_id").collect())
    if not known:
        raise ReelhouseError("None of the rated movies was in the training data, so the model "
                             "cannot place this user: rate some better-known movies.")
    if len(known) < len(ratings):
        progress.say(f"{len(ratings) - len(known)} of the rated movies had no train ratings, so "
                     "the model has no factors for them: they were left out")
    q = np.array([row.factors for row in known], dtype=np.float64)
    r = np.array([row.rating for row in known])
    movie_bias = np.array([row.bias for row in known])
    mean = (run.serving_global_mean if "list_params" in run.__fields__ else run.global_mean) or 0.0
    if params["implicit"]:
        gram = _movie_gram(spark, movie_factors, q.shape[1])
        p = solve_user_implicit(q, r, gram, params["reg_param"], params["alpha"],
                                params["nonnegative"])
        user_bias = 0.0
    else:
        user_bias = 0.0
        if params["bias_centred"]:
            user_bias = float(np.sum(r - mean - movie_bias)
                              / (len(r) + params["user_bias_damping"]))
        p = solve_user(q, r - mean - movie_bias - user_bias, params["reg_param"],
                       params["nonnegative"])
    vector = naming.literal_rows(spark, [("user_factors", "array<double>")],
                                  [([float(x) for x in p],)])
    dot = ("aggregate(zip_with(user_factors, factors, (u, m) -> u * m), cast(0 as double), "
           "(total, x) -> total + x)")
    raw = f"{mean!r} + {user_bias!r} + bias + {dot}"
    scale = None if params["implicit"] else (low, high)
    candidates = movie_factors.where(f"num_ratings >= {int(params['min_movie_ratings'])}")
    scored = (candidates.crossJoin(vector)
              .selectExpr("id as movie_id", f"{raw} as raw_score")
              .join(given.select("movie_id"), "movie_id", "left_anti")
              .orderBy("raw_score", "movie_id", ascending=[False, True])
              .limit(top_n)
              .selectExpr("movie_id", f"{als.clip('raw_score', scale)} as score",
                          "row_number() over (order by raw_score desc, movie_id) as rank"))
    return (_with_titles(spark, settings, scored).orderBy("rank")
            .select("rank", "movie_id", "title", "year", "genres", "score"))


def format_listing(rows) -> str:
    """Recommendations as a person reads them: rank, title (year), genres, score."""
    lines = []
    for row in rows:
        title = row.title if row.title is not None else f"movie {row.movie_id}"
        year = f" ({row.year})" if row.year is not None else ""
        genres = ", ".join(row.genres or [])
        source = getattr(row, "source", None)
        note = " [most rated pick]" if source == "most_rated" else ""
        lines.append(f"{row.rank:>3}. {title}{year}  —  {genres or 'no genres'}  "
                     f"(score {row.score:.2f}, movie {row.movie_id}){note}")
    return "\n".join(lines)
