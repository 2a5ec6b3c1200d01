"""The report models (sql/reports) on a small hand-made warehouse whose answers are known.

The inputs follow the contracts of the marts and of `reelhouse train` (ratings_split, movies,
movie_stats, user_stats, predictions, recommendations, model_runs) and are written here
directly, so no ALS runs. Every metric is recomputed here in plain Python, straight from its
definition in sql/reports/_reports.yml, and compared with the SQL to 1e-9; a few are also
checked against numbers worked out by hand in the comments.

The case (ratings 0.5-5, relevant = test rating >= 4):
  train  u1: m1 4.0, m2 3.0   u2: m1 5.0, m3 3.0   u3: m2 4.0, m4 3.0, m5 3.0
         u4: m3 4.5           u5: m6 2.0, m7 3.5, m8 3.5            (mean exactly 3.5)
  test   u1: m3 5.0, m4 4.0, m5 2.0, m6 4.5      u2: m2 3.5, m4 1.0 (no relevant item)
         u3: m1 4.0, m6 5.0, m7 4.0              u4: six relevant items (more than k = 5)
         u5: m4 4.0                              u6: m2 4.0 (no train rating: a cold user)
Recommendations have equal scores at different ranks (u1), two rows at the same rank (u5),
a list shorter than k (u3), and a cold user with train's popularity list (u6); k = 10 is
longer than every list.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from fractions import Fraction

import pytest

from pipelines import evaluate, registration, runner, sql_project, writes
from pipelines.errors import ReelhouseError
from tests.conftest import fresh_warehouse

KS = (1, 3, 5, 10)
THRESHOLD = 4.0
PRIOR_WEIGHT = 10.0  # var('bayesian_prior_weight') default
MOVIE_DAMPING, USER_DAMPING = 10.0, 5.0  # the runs' bias damping, as train records it
VARS = {"ranking_ks": ",".join(map(str, KS)), "few_ratings_max": 1, "some_ratings_max": 2}
BASELINES = ("global_mean", "movie_mean", "user_movie_bias")
RUNS_SCHEMA = ("run_id string, started_at timestamp, finished_at timestamp, params string, "
               "train_rows bigint, test_rows bigint, prediction_rows bigint, rmse double, "
               "mae double, output_versions map<string, bigint>, global_mean double, "
               "rating_scale_min double, rating_scale_max double")
LIST_SCHEMA = ("run_id string, model string, user_id int, rank int, movie_id int, "
               "score double, source string")

TRAIN = [(1, 1, 4.0), (1, 2, 3.0), (2, 1, 5.0), (2, 3, 3.0), (3, 2, 4.0), (3, 4, 3.0),
         (3, 5, 3.0), (4, 3, 4.5), (5, 6, 2.0), (5, 7, 3.5), (5, 8, 3.5)]
TEST = [(1, 3, 5.0), (1, 4, 4.0), (1, 5, 2.0), (1, 6, 4.5), (2, 2, 3.5), (2, 4, 1.0),
        (3, 1, 4.0), (3, 6, 5.0), (3, 7, 4.0), (4, 1, 4.0), (4, 2, 4.0), (4, 5, 4.5),
        (4, 6, 4.0), (4, 7, 5.0), (4, 8, 4.0), (5, 4, 4.0), (6, 2, 4.0)]
# The warm test rows ALS scored: (user, movie, rating, ALS prediction) for each run.
PREDICTIONS = {"run-1": [(1, 3, 5.0, 4.5), (2, 2, 3.5, 3.0), (4, 1, 4.0, 4.0)],
               "run-2": [(1, 3, 5.0, 4.0), (2, 2, 3.5, 3.5), (4, 1, 4.0, 3.0)]}
# The served model's test lists: (user, rank, movie, score, source)
RECOMMENDATIONS = [
    (1, 1, 5, 4.2, "als"), (1, 2, 3, 4.2, "als"), (1, 3, 7, 4.0, "als"), (1, 4, 4, 3.9, "als"),
    (1, 5, 8, 3.0, "als"),
    (2, 1, 5, 4.0, "als"), (2, 2, 4, 3.8, "als"), (2, 3, 6, 3.0, "als"), (2, 4, 7, 2.9, "als"),
    (2, 5, 8, 2.5, "als"),
    (3, 1, 6, 4.5, "als"), (3, 2, 3, 4.0, "als"),
    (4, 1, 1, 4.9, "als"), (4, 2, 2, 4.8, "als"), (4, 3, 4, 4.7, "als"), (4, 4, 5, 4.6, "als"),
    (4, 5, 6, 4.5, "als"),
    (5, 1, 2, 3.0, "als"), (5, 1, 1, 4.0, "als"), (5, 3, 3, 2.0, "als"), (5, 4, 4, 1.9, "als"),
    (5, 5, 5, 1.0, "als"),
    (6, 1, 1, 4.0, "most_rated"), (6, 2, 3, 3.9, "most_rated"), (6, 3, 2, 3.8, "most_rated"),
]
# The other candidate's test lists: every user's list above in reverse.
CANDIDATES = [(user, 6 - rank, movie, -score, "explicit_als")
              for user, rank, movie, score, _ in RECOMMENDATIONS]
# m1 is a drama and a comedy, m2 has no genre, m3 is missing from the movies file.
MOVIES = [(1, "One", ["Drama", "Comedy"]), (2, "Two", []), (4, "Four", ["Drama"]),
          (5, "Five", ["Comedy"]), (6, "Six", ["Drama"]), (7, "Seven", []), (8, "Eight", [])]


def write_inputs(spark, settings, run_id: str) -> None:
    """The marts and train's output tables the report models read, for one run."""
    split = [(u, m, r, datetime(2020, 1, 1), "train") for u, m, r in TRAIN] + \
        [(u, m, r, datetime(2021, 1, 1), "test") for u, m, r in TEST]
    if not registration.table_exists(spark, settings, "ratings_split"):
        ratings_split = spark.createDataFrame(
            split, "user_id int, movie_id int, rating double, rated_at timestamp, split string")
        writes.replace_table(spark, settings, ratings_split, "ratings_split")
        writes.replace_table(spark, settings, spark.createDataFrame(
            MOVIES, "movie_id int, title string, genres array<string>"), "movies")
        counts = defaultdict(lambda: [0, 0])
        for user, movie, *_ in split:
            counts[("user", user)][0] += 1
            counts[("movie", movie)][0] += 1
        titles = {m: t for m, t, _ in MOVIES}
        writes.replace_table(spark, settings, spark.createDataFrame(
            [(m, titles.get(m), n) for (kind, m), (n, _) in counts.items() if kind == "movie"],
            "movie_id int, title string, num_ratings bigint"), "movie_stats")
        writes.replace_table(spark, settings, spark.createDataFrame(
            [(u, n) for (kind, u), (n, _) in counts.items() if kind == "user"],
            "user_id int, num_ratings bigint"), "user_stats")
    writes.replace_table(spark, settings, spark.createDataFrame(
        [(run_id, u, m, r, p) for u, m, r, p in PREDICTIONS[run_id]],
        "run_id string, user_id int, movie_id int, rating double, prediction double"),
        "predictions")
    for table, model, rows in (("test_recommendations", "implicit_als", RECOMMENDATIONS),
                               ("candidate_recommendations", "explicit_als", CANDIDATES)):
        writes.replace_table(spark, settings, spark.createDataFrame(
            [(run_id, model, *row) for row in rows], LIST_SCHEMA), table)
    for table, entity in (("rating_user_factors", 0), ("rating_movie_factors", 1)):
        ids = sorted({row[entity] for row in TRAIN})
        writes.replace_table(spark, settings, spark.createDataFrame(
            [(run_id, i, [0.5, -0.25 * i], 0.1 * i, 1) for i in ids],
            "run_id string, id int, factors array<float>, bias double, num_ratings bigint"),
            table)
    runs = [model_run("run-0", 1, 1.25)]  # an older run, never evaluated
    for index, name in enumerate(PREDICTIONS, start=1):
        errors = [p - r for _, _, r, p in PREDICTIONS[name]]
        runs.append(model_run(name, index + 1, math.sqrt(sum(e * e for e in errors) / 3)))
        if name == run_id:
            break
    writes.merge_into(spark, settings, spark.createDataFrame(runs, RUNS_SCHEMA),
                       "model_runs", ["run_id"])


def model_run(run_id: str, day: int, rmse: float) -> tuple:
    """A model_runs row: the columns of train's model_runs that the reports read."""
    params = (f'{{"implicit": false, "max_iter": 5, "movie_bias_damping": {MOVIE_DAMPING}, '
              f'"rank": {4 * day}, "reg_param": 0.1, "user_bias_damping": {USER_DAMPING}}}')
    at = datetime(2024, 1, day)
    return (run_id, at, at, params, len(TRAIN), len(TEST), 3, rmse, rmse, {"predictions": day},
            3.5, 0.5, 5.0)


def rows_by_key(spark, table: str, *key: str) -> dict:
    return {tuple(row[k] for k in key): row.asDict()
            for row in spark.table(f"movielens.{table}").collect()}


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """Evaluate run-1, keep what every report table held, then evaluate run-2 on top (for
    metric_history): (settings, {table: rows after run-1}, metric_history after run-2)."""
    settings = fresh_warehouse(spark, tmp_path_factory, "evaluate")
    write_inputs(spark, settings, "run-1")
    evaluate.evaluate(spark, settings, VARS)
    first = {
        "model_metrics": rows_by_key(spark, "model_metrics", "model"),
        "ranking_metrics": rows_by_key(spark, "ranking_metrics", "model", "relevance", "k"),
        "error_by_user_activity": rows_by_key(spark, "error_by_user_activity", "model",
                                              "activity_bucket"),
        "error_by_movie_popularity": rows_by_key(spark, "error_by_movie_popularity", "model",
                                                 "popularity_bucket"),
        "error_by_genre": rows_by_key(spark, "error_by_genre", "model", "genre"),
        "long_tail": rows_by_key(spark, "long_tail", "movie_id"),
        "activity_histogram": rows_by_key(spark, "activity_histogram", "entity", "bin_index"),
        "metric_history": rows_by_key(spark, "metric_history", "run_id", "model"),
    }
    write_inputs(spark, settings, "run-2")
    project = sql_project.load_project(settings, cli_vars=VARS)  # only what metric_history reads
    runner.build(spark, project, ["test_predictions", "test_prediction_errors",
                                  "model_metrics", "ranking_metrics", "metric_history"])
    return settings, first, rows_by_key(spark, "metric_history", "run_id", "model")


# --- the reference: every metric from its definition, in plain Python -------------------------

def baseline_predictions(user: int, movie: int) -> dict[str, float]:
    """What each baseline predicts, learned from TRAIN as test_predictions documents."""
    mu = sum(r for *_, r in TRAIN) / len(TRAIN)
    by_movie, by_user = defaultdict(list), defaultdict(list)
    for u, m, r in TRAIN:
        by_movie[m].append(r)
        by_user[u].append((m, r))
    movie_bias = {m: sum(r - mu for r in rs) / (len(rs) + MOVIE_DAMPING)
                  for m, rs in by_movie.items()}
    user_bias = {u: sum(r - mu - movie_bias[m] for m, r in mrs) / (len(mrs) + USER_DAMPING)
                 for u, mrs in by_user.items()}
    return {"global_mean": mu,
            "movie_mean": sum(by_movie[movie]) / len(by_movie[movie]),
            "user_movie_bias": min(max(mu + user_bias[user] + movie_bias[movie], 0.5), 5.0)}


def error_metrics(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """rmse, mae, mean_error of (prediction, rating) pairs."""
    errors = [p - r for p, r in pairs]
    return {"num_predictions": len(errors),
            "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
            "mae": sum(abs(e) for e in errors) / len(errors),
            "mean_error": sum(errors) / len(errors)}


def model_pairs(run_id: str) -> dict[str, list[tuple[int, int, float, float]]]:
    """(user, movie, prediction, rating) of every model on the warm test rows."""
    result = defaultdict(list)
    for user, movie, rating, als in PREDICTIONS[run_id]:
        result["als"].append((user, movie, als, rating))
        for model, prediction in baseline_predictions(user, movie).items():
            result[model].append((user, movie, prediction, rating))
    return result


def model_lists(rows=RECOMMENDATIONS) -> dict[int, list[int]]:
    """Each user's listed movies in order: rank, then higher score, then movie_id."""
    lists = defaultdict(list)
    for user, _, movie, *_ in sorted(rows, key=lambda r: (r[0], r[1], -r[3], r[2])):
        lists[user].append(movie)
    return lists


def most_rated_lists(max_k: int) -> dict[int, list[int]]:
    """Each listed user's unrated movies by number of TRAIN ratings (ties: lower movie_id)."""
    counts = defaultdict(int)
    for _, movie, _ in TRAIN:
        counts[movie] += 1
    order = sorted(counts, key=lambda m: (-counts[m], m))
    rated = {(u, m) for u, m, _ in TRAIN}
    return {user: [m for m in order if (user, m) not in rated][:max_k]
            for user in {r[0] for r in RECOMMENDATIONS}}


def popularity_lists(max_k: int) -> dict[int, list[int]]:
    """Each listed user's unrated movies by bayesian_avg over TRAIN (ties: more train
    ratings, then lower movie_id)."""
    mu = sum(r for *_, r in TRAIN) / len(TRAIN)
    by_movie = defaultdict(list)
    for _, movie, rating in TRAIN:
        by_movie[movie].append(rating)
    order = sorted(by_movie, key=lambda m: (
        -(PRIOR_WEIGHT * mu + sum(by_movie[m])) / (PRIOR_WEIGHT + len(by_movie[m])),
        -len(by_movie[m]), m))
    rated = {(u, m) for u, m, _ in TRAIN}
    return {user: [m for m in order if (user, m) not in rated][:max_k]
            for user in {r[0] for r in RECOMMENDATIONS}}


def ranking_reference(lists: dict[int, list[int]], k: int,
                      threshold: float | None) -> dict[str, float]:
    """The metrics from their definitions; threshold None: any test rating is relevant."""
    relevant = defaultdict(set)
    for user, movie, rating in TEST:
        if threshold is None or rating >= threshold:
            relevant[user].add(movie)
    per_user = []
    for user, items in relevant.items():  # users with at least one relevant item
        top = lists.get(user, [])[:k]
        gains = [1 if movie in items else 0 for movie in top]
        hits = sum(gains)
        ideal = sum(1 / math.log2(i + 1) for i in range(1, min(k, len(items)) + 1))
        precision_at_hits = [sum(gains[:i]) / i for i in range(1, len(top) + 1) if gains[i - 1]]
        per_user.append({
            "precision_at_k": hits / k,
            "recall_at_k": hits / len(items),
            "ndcg_at_k": sum(g / math.log2(i + 1) for i, g in enumerate(gains, start=1)) / ideal,
            "map_at_k": sum(precision_at_hits) / min(k, len(items)),
            "hit_rate": 1.0 if hits else 0.0,
        })
    result = {name: sum(u[name] for u in per_user) / len(per_user) for name in per_user[0]}
    train_movies = {m for _, m, _ in TRAIN}
    counts = defaultdict(int)
    for _, movie, _ in TRAIN:
        counts[movie] += 1
    listed = [movie for items in lists.values() for movie in items[:k]]
    result["num_evaluated_users"] = len(per_user)
    result["catalog_coverage"] = len(set(listed)) / len(train_movies)
    result["mean_popularity"] = sum(counts[m] for m in listed) / len(listed)
    return result


# --- rating prediction ----------------------------------------------------------------------

def test_baselines_rmse_matches_the_hand_computed_values(built):
    _, first, _ = built
    metrics = first["model_metrics"]
    # mu = 38.5 / 11 = 3.5. Scored rows: (u1, m3, 5.0), (u2, m2, 3.5), (u4, m1, 4.0).
    # global mean 3.5: errors -1.5, 0, -0.5.
    assert metrics[("global_mean",)]["rmse"] == pytest.approx(math.sqrt(2.5 / 3), abs=1e-9)
    assert metrics[("global_mean",)]["mae"] == pytest.approx(2 / 3, abs=1e-9)
    # movie means m3 3.75, m2 3.5, m1 4.5: errors -1.25, 0, 0.5.
    assert metrics[("movie_mean",)]["rmse"] == pytest.approx(math.sqrt(1.8125 / 3), abs=1e-9)
    # movie biases (damping 10): b_m1 = (0.5 + 1.5) / 12 = 1/6, b_m2 = 0, b_m3 = 0.5 / 12
    # = 1/24; user biases (damping 5) on what those leave: b_u1 = ((4 - 3.5 - 1/6)
    # + (3 - 3.5 - 0)) / 7 = -1/42, b_u2 = ((5 - 3.5 - 1/6) + (3 - 3.5 - 1/24)) / 7 = 19/168,
    # b_u4 = (4.5 - 3.5 - 1/24) / 6 = 23/144. Errors: 3.5 - 1/42 + 1/24 - 5 = -83/56,
    # 3.5 + 19/168 - 3.5 = 19/168, 3.5 + 23/144 + 1/6 - 4 = -25/144.
    errors = [Fraction(-83, 56), Fraction(19, 168), Fraction(-25, 144)]
    assert metrics[("user_movie_bias",)]["rmse"] == pytest.approx(
        math.sqrt(sum(e * e for e in errors) / 3), abs=1e-9)
    # ALS: errors -0.5, -0.5, 0.
    assert metrics[("als",)]["rmse"] == pytest.approx(math.sqrt(1 / 6), abs=1e-9)


def test_every_model_is_scored_on_exactly_the_warm_test_rows(built):
    _, first, _ = built
    for model in ("als", *BASELINES):
        row = first["model_metrics"][(model,)]
        expected = error_metrics([(p, r) for _, _, p, r in model_pairs("run-1")[model]])
        assert row["num_predictions"] == 3  # the predictions rows, not all 17 test rows
        for name in ("rmse", "mae", "mean_error"):
            assert row[name] == pytest.approx(expected[name], abs=1e-9), (model, name)
    assert {row["rmse_rank"] for row in first["model_metrics"].values()} == {1, 2, 3, 4}


def test_error_breakdowns_match_the_reference(built):
    _, first, _ = built
    activity = {1: "few", 2: "some"}  # train ratings: u4 1, u1 and u2 2 (vars 1 and 2)
    train_counts = defaultdict(int)
    for user, *_ in TRAIN:
        train_counts[user] += 1
    genres = {m: g for m, _, g in MOVIES}
    for model, rows in model_pairs("run-1").items():
        by_bucket, by_genre = defaultdict(list), defaultdict(list)
        for user, movie, prediction, rating in rows:
            by_bucket[activity[train_counts[user]]].append((prediction, rating))
            names = genres.get(movie)
            for genre in (names or ["(no genres listed)"]) if names is not None \
                    else ["(not in movies file)"]:
                by_genre[genre].append((prediction, rating))
        for bucket in ("few", "some", "many"):
            row = first["error_by_user_activity"][(model, bucket)]
            if bucket not in by_bucket:
                assert row["num_predictions"] == 0 and row["rmse"] is None
                continue
            expected = error_metrics(by_bucket[bucket])
            assert row["num_predictions"] == expected["num_predictions"]
            assert row["rmse"] == pytest.approx(expected["rmse"], abs=1e-9)
            assert row["mae"] == pytest.approx(expected["mae"], abs=1e-9)
        assert {g for m, g in first["error_by_genre"] if m == model} == set(by_genre)
        for genre, pairs in by_genre.items():
            row = first["error_by_genre"][(model, genre)]
            assert row["num_predictions"] == len(pairs)
            assert row["rmse"] == pytest.approx(error_metrics(pairs)["rmse"], abs=1e-9)
        # every movie has 2 train ratings: all 'niche' (up to 10) by default
        niche = first["error_by_movie_popularity"][(model, "niche")]
        assert niche["num_predictions"] == 3
        assert niche["rmse"] == pytest.approx(error_metrics(
            [(p, r) for _, _, p, r in rows])["rmse"], abs=1e-9)
        assert first["error_by_movie_popularity"][(model, "popular")]["num_predictions"] == 0


# --- ranking ----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["implicit_als", "explicit_als", "most_rated", "top_rated"])
@pytest.mark.parametrize("relevance", ["any", "threshold"])
@pytest.mark.parametrize("k", KS)
def test_ranking_metrics_match_the_reference(built, model, relevance, k):
    _, first, _ = built
    lists = {"implicit_als": model_lists, "explicit_als": lambda: model_lists(CANDIDATES),
             "most_rated": lambda: most_rated_lists(max(KS)),
             "top_rated": lambda: popularity_lists(max(KS))}[model]()
    expected = ranking_reference(lists, k, THRESHOLD if relevance == "threshold" else None)
    row = first["ranking_metrics"][(model, relevance, k)]
    # every user has a test rating; u2 has none >= 4
    assert row["num_evaluated_users"] == expected["num_evaluated_users"] == \
        (5 if relevance == "threshold" else 6)
    assert row["served"] == (model == "implicit_als")
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, abs=1e-9), name


def test_the_baselines_would_differ_had_they_counted_test_ratings():
    """Counting every split's ratings changes the most-rated order of this case, so the
    reference match above would fail for a baseline that read a held-out rating."""
    counts = defaultdict(int)
    for _, movie, _ in TRAIN + TEST:
        counts[movie] += 1
    leaked = sorted(counts, key=lambda m: (-counts[m], m))
    rated = {(u, m) for u, m, _ in TRAIN}
    assert {user: [m for m in leaked if (user, m) not in rated][:max(KS)]
            for user in {r[0] for r in RECOMMENDATIONS}} != most_rated_lists(max(KS))


def test_ranking_metrics_known_answers(built):
    _, first, _ = built
    als = {k: first["ranking_metrics"][("implicit_als", "threshold", k)] for k in KS}
    # Evaluated users u1, u3, u4, u5, u6. First items: u1 m5 (no: rank beats the equal score
    # of m3), u3 m6 (yes), u4 m1 (yes), u5 m1 (no: of the two at rank 1 the higher score
    # comes first), u6 m1 (no).
    assert als[1]["precision_at_k"] == pytest.approx(2 / 5, abs=1e-12)
    assert als[1]["hit_rate"] == pytest.approx(2 / 5, abs=1e-12)
    # Hits in the top 5: u1 2, u3 1 (its list has 2 items, still divided by 5), u4 4, u5 1,
    # u6 1 -> 9 / 25.
    assert als[5]["precision_at_k"] == pytest.approx(9 / 25, abs=1e-12)
    # Coverage: the top-1 lists hold m5, m6, m1 of the 8 train movies.
    assert als[1]["catalog_coverage"] == pytest.approx(3 / 8, abs=1e-12)
    assert als[5]["catalog_coverage"] == pytest.approx(1.0, abs=1e-12)
    # Popularity (C = 10, mean 3.5): m1 44/12, m3 42.5/12, then m2 (3.5, 2 ratings) before
    # m7 and m8 (3.5, 1 rating each, lower id first), m4 and m5 (38/11, tie -> m4), m6.
    # u5 rated m6, m7, m8 in train: its list is m1, m3, m2, m4, m5 and its one relevant
    # item, m4, is 4th.
    assert popularity_lists(10)[5] == [1, 3, 2, 4, 5]
    assert popularity_lists(10)[1] == [3, 7, 8, 4, 5, 6]  # only 6 unrated movies: k=10 > list


@pytest.mark.parametrize("value", ["5,ten", "0", "5,,10", "2.5"])
def test_a_bad_ranking_ks_var_fails_before_any_sql(spark, built, value):
    settings, _, _ = built
    with pytest.raises(ReelhouseError, match="ranking_ks must list whole numbers"):
        evaluate.evaluate(spark, settings, {"ranking_ks": value})


def test_the_ranking_metrics_model_rejects_a_bad_ranking_ks_itself(spark, built):
    settings, _, _ = built  # `reelhouse build --select ranking_metrics` skips evaluate's check
    project = sql_project.load_project(settings, cli_vars={"ranking_ks": "5,ten"})
    with pytest.raises(ReelhouseError, match="ranking_metrics"):
        runner.build(spark, project, ["ranking_metrics"])
    assert spark.table("movielens.ranking_metrics").count() == 4 * 2 * 4  # left as it was


# --- exploration tables -------------------------------------------------------------------------

def test_long_tail_orders_movies_by_ratings_and_accumulates_shares(built):
    _, first, _ = built
    counts = defaultdict(int)
    for _, movie, _ in TRAIN + TEST:
        counts[movie] += 1
    order = sorted(counts, key=lambda m: (-counts[m], m))
    total, running = sum(counts.values()), 0
    for rank, movie in enumerate(order, start=1):
        row = first["long_tail"][(movie,)]
        running += counts[movie]
        assert row["popularity_rank"] == rank
        assert row["cumulative_share_of_ratings"] == pytest.approx(running / total, abs=1e-12)
        assert row["segment"] == ("head" if (running - counts[movie]) / total < 0.5 else "tail")
    assert row["cumulative_share_of_ratings"] == 1.0


def test_activity_histogram_bins_double(built):
    _, first, _ = built
    counts = defaultdict(lambda: defaultdict(int))
    for user, movie, _ in TRAIN + TEST:
        counts["user"][user] += 1
        counts["movie"][movie] += 1
    expected = defaultdict(int)
    for entity, per in counts.items():
        for n in per.values():
            expected[(entity, n.bit_length() - 1)] += 1
    assert {key: row["num_entities"] for key, row in first["activity_histogram"].items()} == \
        dict(expected)
    # users rated 6, 4, 6, 7, 4 and 1 times: one in bin 0 (1), five in bin 2 (4-7)
    assert first["activity_histogram"][("user", 2)]["min_ratings"] == 4
    assert first["activity_histogram"][("user", 2)]["max_ratings"] == 7
    assert first["activity_histogram"][("user", 2)]["num_entities"] == 5


def test_rating_estimates_scores_any_pair_with_the_rating_models_formula(spark, built):
    """mu + b_user + b_movie + p.q within the scale, for pairs test never asked about:
    user 1 (bias 0.1, factors [0.5, -0.25]) and movie 2 (bias 0.2, [0.5, -0.5]): 3.5 + 0.1
    + 0.2 + 0.25 + 0.125 = 4.175; user 5 and movie 8 reach 3.5 + 0.5 + 0.8 + 0.25 + 2.5,
    kept at the scale's 5.0."""
    rows = {(r.user_id, r.movie_id): r.estimate for r in spark.sql(
        "select user_id, movie_id, estimate from movielens.rating_estimates "
        "where (user_id = 1 and movie_id = 2) or (user_id = 5 and movie_id = 8)").collect()}
    assert rows == {(1, 2): pytest.approx(4.175, abs=1e-6), (5, 8): 5.0}


# --- history ------------------------------------------------------------------------------------

def test_metric_history_keeps_every_run_and_every_evaluated_metric(built):
    _, first, history = built
    models = ("als", *BASELINES, "implicit_als", "explicit_als", "most_rated", "top_rated")
    assert set(first["metric_history"]) == {("run-0", "als")} | {
        ("run-1", model) for model in models}
    assert set(history) == set(first["metric_history"]) | {("run-2", model) for model in models}
    # run-0 was never evaluated: train's numbers only
    assert history[("run-0", "als")]["recorded_by"] == "train"
    assert history[("run-0", "als")]["rmse"] == 1.25
    assert history[("run-0", "als")]["ndcg_at_k"] is None
    # run-1's rows survive run-2's evaluation unchanged
    for key, row in first["metric_history"].items():
        assert history[key] == row
    run_1 = history[("run-1", "most_rated")]
    assert run_1["k"] == max(KS)
    assert run_1["ndcg_at_k"] == pytest.approx(first["ranking_metrics"][("most_rated", "any", 10)]
                                               ["ndcg_at_k"], abs=1e-12)
    # run-2 has its own ALS error; the baselines are the same rows scored again
    run_2_als = error_metrics([(p, r) for _, _, p, r in model_pairs("run-2")["als"]])
    assert history[("run-2", "als")]["rmse"] == pytest.approx(run_2_als["rmse"], abs=1e-9)
    assert history[("run-2", "global_mean")]["rmse"] == pytest.approx(
        history[("run-1", "global_mean")]["rmse"], abs=1e-12)
    assert history[("run-2", "als")]["als_rank"] == 12  # from the run's params
    assert history[("run-2", "als")]["finished_at"] == datetime(2024, 1, 3)


def test_evaluate_before_training_says_what_to_run(spark, tmp_path_factory):
    settings = fresh_warehouse(spark, tmp_path_factory, "untrained")
    with pytest.raises(ReelhouseError, match=r"movielens\.predictions.*reelhouse run"):
        evaluate.evaluate(spark, settings)

