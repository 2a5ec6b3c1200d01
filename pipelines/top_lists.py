"""Top-N lists from a fit: each user's unrated movies by score (MLlib's blocked top-k, asked
again for users who rated most of their first answer), the most-rated fallback for users the
model cannot score, and each movie's most similar movies."""

from __future__ import annotations

from pipelines import als, naming, progress

LIST_COLUMNS = [("run_id", "string"), ("model", "string"), ("user_id", "int"),
                ("rank", "int"), ("movie_id", "int"), ("score", "double"),
                ("source", "string")]


def top_lists(spark, fit: als.Fit, rated_rows, users, scale, run_id: str):
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
    score = als.clip(f"{fit.base.global_mean!r} + users.bias + warm.raw_score",
                 None if params.implicit else scale)
    name = als.list_model_name(params)
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


def as_blocked_input(features):
    """A side of MLlib's blocked top-k (recommendForAll*), computed once and cut from its
    plan. The top-k crosses every block of one side with every block of the other, and
    Spark's cartesian product computes each side's partitions again for every pair: on
    ml-latest-small, similar movies took 10 s from the factor expressions and 1.6 s from
    their materialised rows."""
    return features.localCheckpoint()


def recommend_for_users(spark, user_factors, movie_factors, rank: int, train_rows,
                        top_n: int):
    """Top N movies of movie_factors (the candidates) that the user did not rate in train,
    for every user with factors: (user_id, rank, movie_id, raw_score), raw_score = movie bias
    + factors . factors (the user's own bias and the global mean do not change the order).
    MLlib's top-k does not know what a user rated, so ask for N + k, drop rated movies, and
    ask again with a 4x bigger k for the users left short; a user is done once
    k >= N + their number of rated movies, which guarantees N unrated ones.
    Each round's rows are checkpointed locally (Spark drops them with the DataFrames)."""
    # Both sides materialised first (as_blocked_input): MLlib's blocked top-k crosses them.
    users = as_blocked_input(user_factors.selectExpr(
        "id", "concat(factors, array(cast(1.0 as float))) as features"))
    movies = as_blocked_input(movie_factors.selectExpr(
        "id", "concat(factors, array(cast(bias as float))) as features"))
    model = als.factor_model(spark, rank + 1, users, movies, "user_id", "movie_id")
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
    unit = as_blocked_input(
        movie_factors.selectExpr("id", "factors", f"{norm} as norm").where("norm > 0")
        .selectExpr("id", "transform(factors, x -> cast(x / norm as float)) as features"))
    similar = as_blocked_input(unit.join(movie_factors.where(
        f"num_ratings >= {int(min_ratings)}").select("id"), "id", "left_semi"))
    model = als.factor_model(spark, rank, unit, similar, "movie_id", "similar_movie_id")
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

