"""GroupLens' real ml-latest-small, from ../shared (never copied into the repo): one
`reelhouse run` of the whole pipeline while `reelhouse serve` is up, seen by PyHive and beeline;
then exact counts, and statistics the test computes on its own from the CSV files, all on the
warehouse that one run built."""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import time
from collections import defaultdict

import pytest

from pipelines import registration
from tests.conftest import (
    REAL_DATA,
    REELHOUSE,
    beeline,
    free_port,
    fresh_warehouse,
    query,
    reelhouse_env,
    start_server,
    stop_server,
    wait_for_ready,
)

pytestmark = pytest.mark.skipif(
    not (REAL_DATA / "ratings.csv").exists(),
    reason=f"GroupLens ml-latest-small is not at {REAL_DATA} (tests read it from ../shared)")


@pytest.fixture(scope="module")
def served_run(spark, tmp_path_factory, installed_reelhouse):
    """The module's one pipeline run on real data: `reelhouse run` (ingest, build, train,
    evaluate) in its own process, from an empty folder, by the `reelhouse` of a plain
    `pip install .` (its SQL project is the one inside the package), on a fresh warehouse
    that `reelhouse serve` serves throughout. Yields (settings, port, the run's stderr)."""
    settings = fresh_warehouse(spark, tmp_path_factory, "ml_latest_small")
    port = free_port()
    run = None
    server = start_server(settings.warehouse, port, "--refresh-seconds", "1")
    log = tmp_path_factory.mktemp("run") / "stderr.txt"
    try:
        with open(log, "w") as stderr:  # the run starts as the server does: both take a while
            run = subprocess.Popen(
                [str(installed_reelhouse), "run", "--warehouse", settings.warehouse,
                 "--data", str(REAL_DATA), "--conf", "spark.ui.enabled=false"],
                stdout=subprocess.DEVNULL, stderr=stderr, text=True, cwd=log.parent,
                env=reelhouse_env("2g"))  # cwd: its report lands there
            wait_for_ready(server, seconds=900)
            returncode = run.wait(timeout=3600)
        assert returncode == 0, log.read_text()[-3000:]
        assert server.poll() is None, "the server stopped during the run"
        registration.register_warehouse(spark, settings)  # this session sees what the run built
        yield settings, port, log.read_text()
    finally:
        if run is not None and run.poll() is None:
            run.terminate()
            run.wait(timeout=90)
        stop_server(server, seconds=90)


@pytest.fixture(scope="module")
def built(served_run):
    return served_run[0]


@pytest.fixture(scope="module")
def csv_ratings():
    with open(REAL_DATA / "ratings.csv", newline="") as handle:
        return [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                for r in csv.DictReader(handle)]


def one(spark, sql):
    return spark.sql(sql).first()


def test_pyhive_and_beeline_see_the_runs_model_runs_row(spark, served_run):
    settings, port, stderr = served_run
    pipeline_run = re.search(r"run (\S+) succeeded", stderr).group(1)
    training_run, printed_rmse = re.search(r"run (\S+): test RMSE ([0-9.]+)", stderr).groups()
    assert [tuple(r) for r in spark.sql(
        "select run_id, status from movielens.pipeline_runs").collect()] == [
        (pipeline_run, "succeeded")]
    als = one(spark, "select run_id, rmse from movielens.model_metrics where model = 'als'")
    assert als.run_id == training_run
    assert als.rmse == pytest.approx(float(printed_rmse), abs=5e-5)

    sql = "select run_id, rmse from movielens.model_runs"
    deadline = time.monotonic() + 60  # the server registers tables the run created
    while time.monotonic() < deadline and not any(
            row[1] == "model_runs" for row in query(port, "show tables in movielens")):
        time.sleep(1)
    [(run_id, rmse)] = query(port, sql)  # PyHive, over SQLAlchemy's hive:// URL
    assert run_id == training_run
    assert rmse == pytest.approx(als.rmse, rel=1e-9)
    header, *rows = beeline(port, sql)
    assert header == "run_id,rmse" and len(rows) == 1
    run_id, rmse = rows[0].split(",")
    assert run_id == training_run
    assert float(rmse) == pytest.approx(als.rmse, rel=1e-9)


def test_exact_counts(spark, built):
    assert one(spark, "select count(*) from movielens.ratings")[0] == 100_836
    assert one(spark, "select count(distinct user_id) from movielens.ratings")[0] == 610
    assert one(spark, "select count(*) from movielens.movies")[0] == 9_742
    assert one(spark, "select count(*) from movielens.rejected_ratings")[0] == 0
    assert one(spark, "select count(*) from movielens.tags")[0] == 3_683
    assert one(spark, "select count(*) from movielens.links")[0] == 9_742


def test_every_mart_is_a_delta_table(spark, built):
    for table in ("ratings", "movies", "movie_stats", "user_stats", "genre_stats",
                  "rating_distribution", "sparsity", "ratings_split", "rejected_ratings"):
        assert one(spark, f"describe detail movielens.{table}").format == "delta", table


def test_movie_stats_match_an_independent_computation(spark, built, csv_ratings):
    by_movie = defaultdict(list)
    for _, movie, rating, _ in csv_ratings:
        by_movie[movie].append(rating)
    global_mean = sum(r for *_, r, _ in csv_ratings) / len(csv_ratings)
    prior = 10.0  # var('bayesian_prior_weight') default, documented in movie_stats.sql
    for movie_id in (1, 318, 2571, 356, 193609):
        ratings = by_movie[movie_id]
        row = one(spark, "select num_ratings, avg_rating, stddev_rating, bayesian_avg "
                         f"from movielens.movie_stats where movie_id = {movie_id}")
        assert row.num_ratings == len(ratings)
        assert row.avg_rating == pytest.approx(statistics.fmean(ratings), abs=1e-9)
        if len(ratings) > 1:
            assert row.stddev_rating == pytest.approx(statistics.stdev(ratings), abs=1e-9)
        expected = (prior * global_mean + sum(ratings)) / (prior + len(ratings))
        assert row.bayesian_avg == pytest.approx(expected, abs=1e-9)
    title = one(spark, "select title, year from movielens.movies where movie_id = 318")
    assert (title.title, title.year) == ("The Shawshank Redemption", 1994)


def test_sparsity_matches_an_independent_computation(spark, built, csv_ratings):
    users = {u for u, *_ in csv_ratings}
    movies = {m for _, m, *_ in csv_ratings}
    row = one(spark, "select * from movielens.sparsity")
    assert (row.num_users, row.num_movies, row.num_ratings) == (610, len(movies), 100_836)
    assert row.density == pytest.approx(100_836 / (len(users) * len(movies)), rel=1e-12)


def test_the_split_is_about_80_20_and_covers_every_rating(spark, built):
    row = one(spark, "select count(*) as n, count_if(split = 'test') as test "
                     "from movielens.ratings_split")
    assert row.n == 100_836
    assert 0.19 < row.test / row.n < 0.21


def test_a_second_process_lists_and_queries_the_tables_by_name(built):
    command = REELHOUSE + ["sql", "--warehouse", built.warehouse,
                           "--format", "json", "--conf", "spark.ui.enabled=false",
                           "select (select count(*) from movielens.ratings) as ratings, "
                           "(select count(*) from movielens.movie_stats "
                           "where num_ratings > 0) as rated"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=reelhouse_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [{"ratings": 100_836, "rated": 9_724}]


def test_served_lists_hold_no_rated_movie_and_beat_most_rated(spark, served_run):
    """The run's end: the list model serves, its test lists rank well above the most-rated
    baseline on the standard protocol, and no served list holds a movie its user rated."""
    _, _, stderr = served_run
    assert re.search(r"lists served by implicit_als .*NDCG@10 0\.\d+.*lift \d\.\d\dx", stderr)
    rated = one(spark, """
        select count(*) from movielens.recommendations as recs
        join movielens.ratings as ratings
          on ratings.user_id = recs.user_id and ratings.movie_id = recs.movie_id""")[0]
    assert rated == 0
    ndcg = {r.model: r.ndcg_at_k for r in spark.sql(
        "select model, ndcg_at_k from movielens.ranking_metrics "
        "where relevance = 'any' and k = 10").collect()}
    assert ndcg["implicit_als"] > 1.5 * ndcg["most_rated"] > ndcg["explicit_als"]
