"""GroupLens' real ml-latest-small, from ../shared (never copied into the repo): exact counts,
and statistics the test computes on its own from the CSV files."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

import pytest

from pipelines import ingest, runner

from .conftest import REAL_DATA, fresh_warehouse

pytestmark = pytest.mark.skipif(
    not (REAL_DATA / "ratings.csv").exists(),
    reason=f"GroupLens ml-latest-small is not at {REAL_DATA} (tests read it from ../shared)")


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    settings = fresh_warehouse(spark, tmp_path_factory, "ml_latest_small")
    ingest.ingest_dataset(spark, settings, REAL_DATA)
    runner.build(spark, runner.load_project(settings, folders=("models",)))
    return settings


@pytest.fixture(scope="module")
def csv_ratings():
    with open(REAL_DATA / "ratings.csv", newline="") as handle:
        return [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                for r in csv.DictReader(handle)]


def one(spark, sql):
    return spark.sql(sql).first()


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
    command = [sys.executable, "-m", "pipelines.cli", "sql", "--warehouse", built.warehouse,
               "--format", "json", "--conf", "spark.ui.enabled=false",
               "select (select count(*) from movielens.ratings) as ratings, "
               "(select count(*) from movielens.movie_stats where num_ratings > 0) as rated"]
    env = {**os.environ, "REELHOUSE_DRIVER_MEMORY": "1g"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [{"ratings": 100_836, "rated": 9_724}]
