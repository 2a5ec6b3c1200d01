"""ALS training: what `reelhouse train`, `tune` and `recommend` promise, on small data with a
known taste structure (real Spark, real Delta; one training run shared by the module).

The data: users 1-40 love movies 1-20 and dislike movies 21-40; users 41-80 the other way
round; user 999 rated three movies, all in the test split, so the model cannot score them.
The input tables follow the warehouse's contract (ratings, movies, movie_stats, ratings_split)
and are written here directly, so these tests depend on no SQL model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from pipelines import (
    als,
    delta_log,
    generate,
    model_runs,
    recommend,
    runner,
    served_model,
    sql_project,
    train,
    tune,
    writes,
)
from pipelines.errors import ReelhouseError
from tests.conftest import fresh_warehouse

NUM_USERS, NUM_MOVIES, COLD_USER = 80, 40, 999
PARAMS = als.TrainParams(rank=4, max_iter=6, reg_param=0.05, top_n=5, seed=7,
                         checkpoint_interval=2)
# The list model: implicit, a rating of 4 or more says "liked" (in this data every user rates
# a random 24 movies, so which movies were rated says nothing; how they were rated does).
LIST_PARAMS = replace(PARAMS, implicit=True, reg_param=0.1, confidence="threshold",
                      confidence_threshold=4.0)


def taste_ratings(seed: int = 1) -> list[tuple[int, int, float, int, str]]:
    """(user_id, movie_id, rating, unix seconds, split) with two taste groups plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, NUM_USERS + 1):
        group = 0 if user <= NUM_USERS // 2 else 1
        user_bias = rng.normal(0, 0.3)
        for movie in rng.choice(np.arange(1, NUM_MOVIES + 1), size=24, replace=False):
            loved = (movie <= NUM_MOVIES // 2) == (group == 0)
            score = 3.0 + user_bias + (1.3 if loved else -1.3) + rng.normal(0, 0.3)
            rating = float(np.clip(np.round(score * 2) / 2, 0.5, 5.0))
            split = "test" if rng.random() < 0.2 else "train"
            rows.append((user, int(movie), rating, 1_500_000_000 + len(rows), split))
    for movie in (1, 2, 30):
        rows.append((COLD_USER, movie, 4.0, 1_600_000_000 + movie, "test"))
    return rows


def write_inputs(spark, settings, split) -> None:
    """The input tables of the training contract (and the statistics `recommend` reads), from
    a DataFrame of
    (user_id int, movie_id int, rating double, ts long, split string)."""
    split = split.selectExpr("user_id", "movie_id", "rating", "timestamp_seconds(ts) as rated_at",
                             "split")
    writes.replace_table(spark, settings, split, "ratings_split")
    writes.replace_table(spark, settings, split.drop("split"), "ratings")
    movies = split.select("movie_id").distinct().selectExpr(
        "movie_id", "concat('Movie ', movie_id) as title", "1990 + movie_id % 30 as year",
        "if(movie_id % 2 = 1, array('Drama'), array('Comedy', 'Romance')) as genres")
    writes.replace_table(spark, settings, movies, "movies")
    stats = spark.sql("""
        select movie_id, title, year, genres, count(*) as num_ratings,
               avg(rating) as avg_rating,
               (10 * (select avg(rating) from movielens.ratings) + sum(rating))
                   / (10 + count(*)) as bayesian_avg
        from movielens.ratings join movielens.movies using (movie_id)
        group by movie_id, title, year, genres""")
    writes.replace_table(spark, settings, stats, "movie_stats")
    users = spark.sql("select user_id, count(*) as num_ratings from movielens.ratings "
                      "group by user_id")
    writes.replace_table(spark, settings, users, "user_stats")


def table_rows(spark, table: str) -> list[tuple]:
    return sorted(tuple(r) for r in spark.table(f"movielens.{table}").collect())


def snapshot(spark) -> dict[str, list[tuple]]:
    return {t: table_rows(spark, t) for t in (*model_runs.OUTPUT_TABLES, model_runs.RUNS_TABLE)}


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A warehouse with the taste data and one finished training run: (settings, run_id)."""
    settings = fresh_warehouse(spark, tmp_path_factory, "train")
    csv = tmp_path_factory.mktemp("taste") / "ratings.csv"
    csv.write_text("".join(",".join(map(str, row)) + "\n" for row in taste_ratings()))
    write_inputs(spark, settings, spark.read.csv(
        str(csv), schema="user_id int, movie_id int, rating double, ts long, split string"))
    return settings, train.train(spark, settings, PARAMS, LIST_PARAMS)


def last_run(spark):
    return spark.sql("select * from movielens.model_runs order by finished_at desc limit 1") \
        .first()


# --- what a run publishes ------------------------------------------------------------------------

def test_predictions_cover_every_warm_test_row(spark, trained):
    settings, run_id = trained
    warm = spark.sql("""
        with split as (select * from movielens.ratings_split),
        train_users as (select distinct user_id from split where split = 'train'),
        train_movies as (select distinct movie_id from split where split = 'train')
        select split.user_id, split.movie_id, split.rating from split
        join train_users using (user_id) join train_movies using (movie_id)
        where split = 'test'""")
    predictions = spark.table("movielens.predictions")
    assert sorted(map(tuple, warm.collect())) == sorted(
        map(tuple, predictions.select("user_id", "movie_id", "rating").collect()))
    bounds = predictions.selectExpr("min(prediction)", "max(prediction)",
                                    "count(distinct run_id)", "min(run_id)").first()
    assert 0.5 <= bounds[0] and bounds[1] <= 5.0
    assert (bounds[2], bounds[3]) == (1, run_id)
    run = last_run(spark)
    assert run.run_id == run_id
    assert run.cold_start_rows == run.test_rows - predictions.count() >= 3  # user 999's rows
    assert run.rmse < 0.6  # the taste structure is easy; noise sigma is 0.3


def test_every_user_gets_exactly_n_recommendations_none_rated_anywhere(spark, trained):
    counts = spark.sql("""
        select ratings.user_id, count(recs.movie_id) as num, count(distinct recs.rank) as ranks,
               min(recs.rank) as first, max(recs.rank) as last
        from (select distinct user_id from movielens.ratings) as ratings
        left join movielens.recommendations as recs on recs.user_id = ratings.user_id
        group by ratings.user_id""").collect()
    assert len(counts) == NUM_USERS + 1
    assert {(r.num, r.ranks, r.first, r.last) for r in counts} == {(5, 5, 1, 5)}
    rated = spark.sql("""
        select * from movielens.recommendations as recs
        join movielens.ratings as ratings
          on ratings.user_id = recs.user_id and ratings.movie_id = recs.movie_id""")
    assert rated.count() == 0  # the serving model saw every rating: no split's rows come back
    assert spark.sql("select count(*) from movielens.recommendations "
                     "where source != 'implicit_als'").first()[0] == 0  # every user has factors


def test_recommendations_follow_taste(spark, trained):
    """A user who loves movies 1-20 is recommended movies 1-20, and the other way round."""
    wrong_side = spark.sql(f"""
        select * from movielens.recommendations
        where user_id != {COLD_USER}
          and (user_id <= {NUM_USERS // 2}) != (movie_id <= {NUM_MOVIES // 2})""").count()
    assert wrong_side <= 0.1 * NUM_USERS * PARAMS.top_n


def train_only_most_rated(top_n: int) -> list[tuple[int, float]]:
    """The most-rated movies over the TRAIN rows of the taste data, computed here."""
    counts: dict[int, int] = {}
    for _, movie, _, _, split in taste_ratings():
        if split == "train":
            counts[movie] = counts.get(movie, 0) + 1
    return [(m, float(n)) for m, n in sorted(counts.items(), key=lambda mn: (-mn[1], mn[0]))
            ][:top_n]


def test_a_user_unseen_in_train_gets_the_train_only_most_rated_list(spark, trained):
    """User 999's ratings are all test rows: in test_recommendations it gets the most-rated
    movies of the train rows. Counting every row (as movie_stats does) gives another list
    here, so a fallback that read a held-out rating fails this test."""
    recs = spark.sql(f"select rank, movie_id, score, source from movielens.test_recommendations "
                     f"where user_id = {COLD_USER} order by rank").collect()
    expected = train_only_most_rated(PARAMS.top_n)
    assert [(r.movie_id, r.score, r.source) for r in recs] == \
        [(m, n, "most_rated") for m, n in expected]
    every_row = spark.sql("select movie_id from movielens.ratings group by movie_id "
                          "order by count(*) desc, movie_id limit 5").collect()
    assert [r.movie_id for r in every_row] != [m for m, _ in expected]  # the test can tell


def test_test_lists_cover_every_user_with_a_test_rating_and_skip_their_train_movies(
        spark, trained):
    lists = {(r.model, r.user_id): r for r in spark.sql("""
        select model, user_id, count(*) as num, collect_set(movie_id) as movies,
               min(rank) as first, max(rank) as last
        from (select * from movielens.test_recommendations
              union all select * from movielens.candidate_recommendations)
        group by model, user_id""").collect()}
    tested = {r.user_id for r in spark.sql(
        "select distinct user_id from movielens.ratings_split where split = 'test'").collect()}
    assert {user for model, user in lists if model == "implicit_als"} == tested
    assert {user for model, user in lists if model == "explicit_als"} == tested
    assert {(r.num, r.first, r.last) for r in lists.values()} == {(5, 1, 5)}
    train_movies: dict[int, set] = {}
    for user, movie, _, _, split in taste_ratings():
        if split == "train":
            train_movies.setdefault(user, set()).add(movie)
    for (_, user), row in lists.items():
        assert not set(row.movies) & train_movies.get(user, set())
    # the served lists follow taste: users 1-40 are listed movies 1-20, and the other way round
    wrong_side = sum((user <= NUM_USERS // 2) != (movie <= NUM_MOVIES // 2)
                     for (model, user), row in lists.items()
                     if model == "implicit_als" and user != COLD_USER for movie in row.movies)
    assert wrong_side <= 0.1 * NUM_USERS * PARAMS.top_n


def test_similar_movies_are_the_most_cosine_similar_and_share_taste(spark, trained):
    rows = spark.table("movielens.similar_movies").collect()
    by_movie: dict[int, list] = {}
    for row in rows:
        by_movie.setdefault(row.movie_id, []).append(row)
    factors = {r.id: np.array(r.factors, dtype=float)
               for r in spark.table("movielens.movie_factors").collect()}
    assert set(by_movie) == set(factors)
    movie = 3
    unit = {m: f / np.linalg.norm(f) for m, f in factors.items()}
    expected = sorted((m for m in unit if m != movie), key=lambda m: -unit[movie] @ unit[m])[:5]
    listed = sorted(by_movie[movie], key=lambda r: r.rank)
    assert [r.similar_movie_id for r in listed] == expected
    assert [r.similarity for r in listed] == pytest.approx(
        [unit[movie] @ unit[m] for m in expected], abs=1e-5)
    for movie_id, similar in by_movie.items():
        assert len(similar) == 5 and movie_id not in {r.similar_movie_id for r in similar}
        same_side = sum((r.similar_movie_id <= 20) == (movie_id <= 20) for r in similar)
        assert same_side >= 4


def test_model_runs_records_inputs_outputs_and_the_saved_model(spark, trained):
    settings, run_id = trained
    run = last_run(spark)
    assert json.loads(run.params)["rank"] == PARAMS.rank
    assert json.loads(run.list_params) == {**asdict(LIST_PARAMS), "bias_centred": False}
    assert run.list_model == "implicit_als"
    assert set(run.input_versions) == set(model_runs.INPUT_TABLES)
    assert set(run.output_versions) == set(model_runs.OUTPUT_TABLES)
    for table, version in run.output_versions.items():
        assert delta_log.current_version(spark, settings, table) == version
    # the rating model was fit on train, the serving list model on every rating
    assert spark.sql("select sum(num_ratings) from movielens.rating_movie_factors").first()[0] \
        == spark.sql("select sum(num_ratings) from movielens.rating_user_factors").first()[0] \
        == run.train_rows
    assert spark.sql("select sum(num_ratings) from movielens.movie_factors").first()[0] \
        == run.serving_rows == spark.table("movielens.ratings").count()
    assert run.model_path == f"{settings.warehouse}/_models/{run_id}"


def test_the_saved_rating_model_reproduces_predictions_by_itself(spark, trained):
    """ALSModel.load alone (no bias tables): its transform() is the unclipped estimate."""
    from pyspark.ml.recommendation import ALSModel

    run = last_run(spark)
    model = ALSModel.load(f"{run.model_path}/ratings")
    assert model.rank == PARAMS.rank + 2  # the factors carry the biases and the mean
    pairs = spark.sql("select user_id, movie_id, prediction as stored from movielens.predictions")
    scored = model.transform(pairs).selectExpr(
        "user_id", "movie_id", "prediction as stored",
        f"least(greatest(prediction, {run.rating_scale_min}), {run.rating_scale_max}) "
        "as from_model").collect()
    assert len(scored) == spark.table("movielens.predictions").count() > 0
    for row in scored:
        assert row.from_model == pytest.approx(row.stored, abs=1e-5)


def test_the_saved_list_model_holds_the_published_factors_and_scores_the_lists(spark, trained):
    """ALSModel.load of lists/ is the serving fit: its factors are user_factors' and
    movie_factors', and its transform() gives every served list's score (implicit: the raw
    preference, no bias, no clipping)."""
    from pyspark.ml.recommendation import ALSModel

    model = ALSModel.load(f"{last_run(spark).model_path}/lists")
    assert model.rank == LIST_PARAMS.rank
    for saved, table in ((model.userFactors, "user_factors"),
                         (model.itemFactors, "movie_factors")):
        published = {r.id: list(r.factors) for r in spark.table(f"movielens.{table}").collect()}
        assert {r.id: list(r.features) for r in saved.collect()} == published
    served = spark.sql("select user_id, movie_id, score from movielens.recommendations "
                       "where source = 'implicit_als'")
    scored = model.transform(served).collect()
    assert len(scored) == served.count() > 0
    for row in scored:
        assert row.prediction == pytest.approx(row.score, rel=1e-5, abs=1e-5)


# --- recommend -----------------------------------------------------------------------------------

def test_fold_in_returns_unrated_movies_in_the_users_taste(trained):
    settings, _ = trained
    likes = [(m, 5.0) for m in (1, 2, 3, 4, 5)] + [(m, 1.0) for m in (21, 22, 23, 24, 25)]
    rows = recommend.fold_in(settings, likes, top_n=8)
    assert [r["rank"] for r in rows] == list(range(1, 9))
    ids = [r["movie_id"] for r in rows]
    assert len(set(ids)) == 8 and not set(ids) & {m for m, _ in likes}
    # loved by users of the same taste (the list model has rank 4 and this user 5 likes)
    assert sum(m <= 20 for m in ids) >= 6, [(r["movie_id"], r["score"]) for r in rows]
    assert all(m <= 20 for m in ids[:5])
    # the reason is a movie the user loved (a 1 is under the threshold: not a "like")
    assert all(r["because"]["movie_id"] in (1, 2, 3, 4, 5) for r in rows)
    everything = recommend.fold_in(settings, likes, top_n=30)
    order = [r["movie_id"] for r in everything]
    assert order.index(6) < order.index(26)  # 6 loved, 26 hated by that taste group


def test_fold_in_of_a_known_user_gives_back_their_factors(spark, trained):
    """The solve is implicit ALS's own user step: same confidences, same regularisation. The
    serving model was fit on every rating, so the user's every rating goes in."""
    settings, _ = trained
    user = 7
    own = [(r.movie_id, r.rating) for r in spark.sql(
        f"select movie_id, rating from movielens.ratings where user_id = {user} "
        "order by movie_id").collect()]
    placed = served_model.load(settings).place_user(own)
    trained_user = spark.sql(f"select factors from movielens.user_factors where id = {user}") \
        .first()
    liked = [rating >= LIST_PARAMS.confidence_threshold for _, rating in own]
    assert 0 < sum(liked) < len(liked)  # both kinds of rating are in the solve
    assert placed["factors"] == pytest.approx(np.array(trained_user.factors), abs=2e-3)


def test_recommend_user_lists_titles_and_rejects_unknown_users(trained):
    settings, _ = trained
    rows = recommend.for_user(settings, 3)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["title"] == f"Movie {r['movie_id']}" and r["genres"] for r in rows)
    assert "1. Movie" in recommend.format_listing(rows)
    with pytest.raises(ReelhouseError, match="User 123456 is not in the warehouse"):
        recommend.for_user(settings, 123456)
    with pytest.raises(ReelhouseError, match="kept 5 per list"):
        recommend.for_user(settings, 3, top_n=6)
    with pytest.raises(ReelhouseError, match="Movie 424242 is not in the warehouse"):
        recommend.fold_in(settings, [(1, 4.0), (424242, 3.0)])
    with pytest.raises(ReelhouseError, match="outside this dataset's scale"):
        recommend.fold_in(settings, [(1, 7.0)])


@pytest.mark.parametrize("text, message", [
    ("movie_id,rating\n1,4\n1,5\n", "rated twice"),
    ("1,4\nabc,3\n", "line 2 .*movie id 'abc'"),
    ("1,4\n2,great\n", "rating 'great' is not a number"),
    ("1,4,5\n", "line 1 .*3 fields"),
    ("movieId,rating\n", "has no ratings"),
])
def test_ratings_file_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "mine.csv"
    path.write_text(text)
    with pytest.raises(ReelhouseError, match=message):
        recommend.read_ratings_file(path)


def test_ratings_file_with_or_without_header(tmp_path):
    with_header = tmp_path / "a.csv"
    with_header.write_text("\ufeffmovieId,rating\r\n10,4.5\r\n\r\n# a comment\r\n2,1\r\n")
    without = tmp_path / "b.csv"
    without.write_text("2,1\n10,4.5\n")
    assert recommend.read_ratings_file(with_header) == recommend.read_ratings_file(without) \
        == [(2, 1.0), (10, 4.5)]


# --- parameters, failures, reruns -----------------------------------------------------------------

def test_invalid_parameters_fail_before_any_table_is_touched(spark, trained):
    settings, _ = trained
    versions = {t: delta_log.current_version(spark, settings, t)
                for t in (*model_runs.OUTPUT_TABLES, model_runs.RUNS_TABLE)}
    for bad in ({"rank": 0}, {"max_iter": -1}, {"reg_param": -0.1}, {"reg_param": float("nan")},
                {"top_n": 0}, {"alpha": -1.0}, {"rank": 2.5}, {"seed": "42"},
                {"implicit": True, "bias_centred": True}, {"user_bias_damping": float("inf")}):
        with pytest.raises(ReelhouseError):
            train.train(spark, settings, als.TrainParams(**bad))
    assert versions == {t: delta_log.current_version(spark, settings, t) for t in versions}


class InjectedFailure(RuntimeError):
    pass


def fail_writing(monkeypatch, failing_table: str) -> list[str]:
    """Make train raise when it writes `failing_table`; returns the tables really written.
    Train writes its five tables side by side, so the others are all written."""
    written: list[str] = []
    publish = train._publish

    def publish_or_fail(spark, settings, df, table):
        if table == failing_table:
            raise InjectedFailure(f"injected failure writing {table}")
        version = publish(spark, settings, df, table)
        written.append(table)
        return version

    monkeypatch.setattr(train, "_publish", publish_or_fail)
    return written


def test_a_failed_train_leaves_the_previous_tables_unchanged(spark, trained, monkeypatch):
    settings, run_id = trained
    before = snapshot(spark)
    written = fail_writing(monkeypatch, "similar_movies")
    with pytest.raises(InjectedFailure):
        train.train(spark, settings, replace(PARAMS, max_iter=1), LIST_PARAMS)
    assert sorted(written) == sorted(set(model_runs.OUTPUT_TABLES) - {"similar_movies"})
    assert snapshot(spark) == before
    assert last_run(spark).run_id == run_id


def test_a_killed_train_is_repaired_and_the_same_seed_gives_the_same_rmse(
        spark, trained, monkeypatch):
    settings, run_id = trained
    before = snapshot(spark)
    fail_writing(monkeypatch, "similar_movies")
    # A kill gives the run no chance to clean up: take its rollback away.
    monkeypatch.setattr(model_runs, "rollback", lambda *args: None)
    with pytest.raises(InjectedFailure):
        train.train(spark, settings, replace(PARAMS, max_iter=1), LIST_PARAMS)
    half_written = table_rows(spark, "user_factors")
    assert half_written != before["user_factors"]  # the new run's factors are there
    monkeypatch.undo()

    model_runs.recover_interrupted(spark, settings)  # what the next train does first
    assert snapshot(spark) == before  # readable and exactly as the last finished run left it

    second = train.train(spark, settings, PARAMS, LIST_PARAMS)
    runs = {r.run_id: r for r in spark.table("movielens.model_runs").collect()}
    assert set(runs) == {run_id, second}
    assert runs[second].rmse == runs[run_id].rmse
    assert runs[second].mae == runs[run_id].mae
    for table in ("predictions", "recommendations"):
        now = [row[1:] for row in table_rows(spark, table)]
        assert now == [row[1:] for row in before[table]]  # same rows but the run_id


def test_tune_records_every_trial_and_train_can_use_the_best(spark, trained):
    settings, _ = trained
    grid = tune.TuneGrid(ranks=(2, 4), reg_params=(0.05,), max_iters=(4,), parallelism=2,
                         base=PARAMS)
    tune_id = tune.tune(spark, settings, grid)
    trials = spark.sql("select * from movielens.model_trials order by trial_id").collect()
    assert [(t.tune_id, t.rank) for t in trials] == [(tune_id, 2), (tune_id, 4)]
    assert all(t.validation_rmse > 0 and t.fit_rows > t.validation_rows > 0 for t in trials)
    best = min(trials, key=lambda t: t.validation_rmse)
    assert tune.best_params(spark, settings)["rank"] == best.rank
    with pytest.raises(ReelhouseError, match="parallelism"):
        tune.tune(spark, settings, tune.TuneGrid(parallelism=0))


def test_tune_with_the_ranking_objective_scores_lists_on_the_validation_share(spark, trained):
    """Implicit grid points and the rating model as a candidate, each scored by NDCG@10 of
    its lists for the validation share's users, fit movies excluded; never a test row."""
    settings, _ = trained
    grid = tune.TuneGrid(objective="ranking", ranks=(2, 4), reg_params=(0.1,), max_iters=(4,),
                         alphas=(1.0,), parallelism=2, base=PARAMS, list_base=LIST_PARAMS)
    tune_id = tune.tune(spark, settings, grid)
    trials = spark.sql(f"select * from movielens.model_trials where tune_id = '{tune_id}' "
                       "order by trial_id").collect()
    assert [(t.implicit, t.rank, t.objective) for t in trials] == [
        (True, 2, "ranking"), (True, 4, "ranking"), (False, PARAMS.rank, "ranking")]
    train_rows = spark.sql("select user_id, movie_id, rating from movielens.ratings_split "
                           "where split = 'train'")
    _, validation = tune.validation_split(settings, train_rows, 0.2, grid.seed)
    validation_users = validation.select("user_id").distinct().count()
    for trial in trials:
        assert 0 < trial.validation_ndcg_at_10 <= 1 and trial.validation_rmse is None
        assert trial.validation_users == validation_users  # every user has a relevant item
        assert trial.validation_rows == validation.count()
    best, why = tune.best_list_params(spark, settings)
    top = max(trials, key=lambda t: (t.validation_ndcg_at_10, [-ord(c) for c in t.trial_id]))
    assert (best.implicit, best.rank) == (top.implicit, top.rank) and tune_id in why


# --- the report's baseline ----------------------------------------------------------------------

def test_the_reports_bias_baseline_uses_the_damping_train_used(spark, trained):
    """`reelhouse train --user-bias-damping 8 --movie-bias-damping 3`, then the report:
    test_predictions' user_movie_bias baseline is mu + b_user + b_movie of the biases this run
    centred its ratings on (rating_*_factors), not the default damping's. (Adds a run, so it
    comes after the tests that count runs.)"""
    settings, _ = trained
    default_biases = dict(spark.sql("select id, bias from movielens.rating_user_factors")
                          .collect())
    params = replace(PARAMS, max_iter=1, user_bias_damping=8.0, movie_bias_damping=3.0)
    run_id = train.train(spark, settings, params, params)
    runner.build(spark, sql_project.load_project(settings), ["test_predictions"])
    rows = spark.sql(f"""
        select report.user_id, users.bias as user_bias, report.user_movie_bias_prediction,
               least(greatest(run.global_mean + users.bias + movies.bias,
                              run.rating_scale_min), run.rating_scale_max) as trained
        from movielens.test_predictions as report
        join movielens.rating_user_factors as users on report.user_id = users.id
        join movielens.rating_movie_factors as movies on report.movie_id = movies.id
        join movielens.model_runs as run on report.run_id = run.run_id
        where run.run_id = '{run_id}'""").collect()
    assert len(rows) == spark.table("movielens.predictions").count() > 0
    for row in rows:
        assert row.user_movie_bias_prediction == pytest.approx(row.trained, abs=1e-9)
    # and the damping took effect: with some 20 train ratings a user's bias moves with it
    assert any(row.user_bias != pytest.approx(default_biases[row.user_id], abs=1e-6)
               for row in rows)


# --- synthetic data of known noise ---------------------------------------------------------------

def test_synthetic_rmse_is_within_ten_percent_of_the_generators_floor(
        spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    meta = generate.generate_dataset(folder, 24_000, num_users=200, num_movies=150, seed=3,
                                     noise_sigma=0.5, true_rank=4)
    settings = fresh_warehouse(spark, tmp_path_factory, "synthetic")
    ratings = spark.read.option("header", True).csv(str(folder / "ratings.csv")).selectExpr(
        "cast(userId as int) as user_id", "cast(movieId as int) as movie_id",
        "cast(rating as double) as rating", "cast(timestamp as long) as ts")
    split = "case when pmod(xxhash64(user_id, movie_id), 5) = 0 then 'test' else 'train' end"
    write_inputs(spark, settings, ratings.selectExpr("*", f"{split} as split"))
    params = als.TrainParams(rank=6, max_iter=10, reg_param=0.05, seed=1).validated()
    versions = model_runs.input_versions(spark, settings)
    rows = model_runs.read_input(spark, settings, "ratings_split", versions)
    base = als.baseline(spark, settings, rows.where("split = 'train'"), params)
    result = tune.evaluate_trial(spark, settings, rows.where("split = 'train'"),
                                  rows.where("split = 'test'"), base, params, (0.5, 5.0))
    assert result["rmse"] <= 1.10 * meta["expected_rmse_floor"]
