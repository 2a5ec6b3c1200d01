"""`reelhouse report` on a small warehouse: the marts built by the SQL models from a few
thousand generated ratings, train's output tables faked in SQL (no ALS), the report models
built by `evaluate`. The HTML is then opened in headless Chromium (Debian's `chromium`
package), offline, which must log nothing to its console, and a screenshot is taken.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from datetime import datetime

import numpy as np
import pytest

from pipelines import charts, evaluate, report, report_page, runner, sql_project, writes
from tests.conftest import fresh_warehouse

CHROMIUM = "/usr/bin/chromium"
MARTS = ["movie_stats", "user_stats", "rating_distribution", "sparsity", "ratings_split"]
GENRES = ["Drama", "Comedy", "Action", "Thriller", "Romance", "Sci-Fi", "Horror"]
# One chart per figure: rating distribution, long tail, ratings per user, ratings per movie,
# ALS against baselines, ranking, error by activity, by popularity, by genre, tuning heat
# map, RMSE history, NDCG history.
NUM_CHARTS = 13


def write_marts_inputs(spark, settings, seed: int = 3) -> None:
    """ratings, movies and users as the marts read them: 120 users, 150 movies, heavy-tailed
    popularity and activity, ratings in half stars."""
    rng = np.random.default_rng(seed)
    popularity = 1 / np.arange(1, 151) ** 0.9
    rows = []
    for user in range(1, 121):
        count = int(min(150, 5 + rng.pareto(1.3) * 12))
        movies = rng.choice(np.arange(1, 151), size=count, replace=False,
                            p=popularity / popularity.sum())
        for movie in movies:
            stars = np.clip(np.round((3.4 + rng.normal(0, 0.9)) * 2) / 2, 0.5, 5.0)
            rows.append((user, int(movie), float(stars), datetime(2020, 1, 1 + int(movie) % 28)))
    writes.replace_table(spark, settings, spark.createDataFrame(
        rows, "user_id int, movie_id int, rating double, rated_at timestamp"), "ratings")
    writes.replace_table(spark, settings, spark.createDataFrame(
        [(m, f"Movie {m}", 1980 + m % 40, [GENRES[m % 7], GENRES[(m * 3) % 7]][: 1 + m % 2])
         for m in range(1, 151)],
        "movie_id int, title string, year int, genres array<string>"), "movies")
    writes.replace_table(spark, settings, spark.createDataFrame(
        [], "user_id int, gender string, age_group string, occupation string"), "users")
    writes.replace_table(spark, settings, spark.createDataFrame(  # ml-100k's own splits: none
        [], "split_name string, split_part string, user_id int, movie_id int"), "grouplens_splits")


def fake_training(spark, settings) -> None:
    """What `reelhouse train` and `tune` write, made up in SQL: predictions are the test rating
    plus hashed noise, recommendations are ten unrated movies per user, three runs, a 3 x 3
    tuning grid."""
    predictions = spark.sql("""
        with split as (select * from movielens.ratings_split),
        train as (select * from split where split = 'train')
        select 'run-3' as run_id, test.user_id, test.movie_id, test.rating,
               least(greatest(test.rating + (xxhash64(test.user_id, test.movie_id) % 100) / 120,
                              0.5), 5.0) as prediction
        from split as test
        where test.split = 'test'
          and test.user_id in (select user_id from train)
          and test.movie_id in (select movie_id from train)""")
    writes.replace_table(spark, settings, predictions, "predictions")
    for table, model, salt in (("test_recommendations", "implicit_als", 1),
                               ("candidate_recommendations", "explicit_als", 2)):
        lists = spark.sql(f"""
            with train as (select * from movielens.ratings_split where split = 'train'),
            candidates as (
                select users.user_id, movies.movie_id,
                       abs(xxhash64(users.user_id, movies.movie_id, {salt})) % 1000 / 200.0
                           as score
                from (select distinct user_id from movielens.ratings_split
                      where split = 'test') as users
                cross join (select distinct movie_id from train) as movies
                left anti join train on users.user_id = train.user_id
                    and movies.movie_id = train.movie_id)
            select 'run-3' as run_id, '{model}' as model, user_id, rank, movie_id, score,
                   '{model}' as source
            from (select *, row_number() over (partition by user_id order by score desc,
                                               movie_id) as rank from candidates)
            where rank <= 10""")
        writes.replace_table(spark, settings, lists, table)
    write_rating_factors(spark, settings, "run-3")
    runs = [(f"run-{n}", datetime(2024, 3, n),
             f'{{"rank": {10 * n}, "reg_param": 0.1, "movie_bias_damping": 10.0, '
             '"user_bias_damping": 5.0}',
             1000, 250, 240, 10, 3.5, 1.1 - 0.1 * n, 0.9 - 0.1 * n, {"predictions": n},
             3.5, 0.5, 5.0) for n in (1, 2, 3)]
    writes.replace_table(spark, settings, spark.createDataFrame(
        runs, "run_id string, finished_at timestamp, params string, train_rows bigint, "
              "test_rows bigint, prediction_rows bigint, cold_start_rows bigint, "
              "fit_seconds double, rmse double, mae double, "
              "output_versions map<string, bigint>, global_mean double, "
              "rating_scale_min double, rating_scale_max double"), "model_runs")
    trials = [("tune-1", datetime(2024, 3, 1), rank, reg, 10,
               0.85 + abs(rank - 20) / 200 + abs(reg - 0.1)) for rank in (10, 20, 30)
              for reg in (0.05, 0.1, 0.2)]
    writes.replace_table(spark, settings, spark.createDataFrame(
        trials, "tune_id string, tuned_at timestamp, rank int, reg_param double, "
                "max_iter int, validation_rmse double"), "model_trials")


def write_rating_factors(spark, settings, run_id: str) -> None:
    """The rating model's factor tables as train writes them (rank 2, made up)."""
    for table, key in (("rating_user_factors", "user_id"), ("rating_movie_factors", "movie_id")):
        writes.replace_table(spark, settings, spark.sql(f"""
            select '{run_id}' as run_id, {key} as id,
                   array(cast({key} % 3 / 10 as float), cast(0.1 as float)) as factors,
                   cast({key} % 5 / 10 as double) as bias, count(*) as num_ratings
            from movielens.ratings_split where split = 'train' group by {key}"""), table)


@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    """A small evaluated warehouse and its report: (settings, path of the HTML)."""
    settings = fresh_warehouse(spark, tmp_path_factory, "report")
    write_marts_inputs(spark, settings)
    runner.build(spark, sql_project.load_project(settings, folders=("models",)), MARTS)
    fake_training(spark, settings)
    evaluate.evaluate(spark, settings)
    out = tmp_path_factory.mktemp("report-out")
    return settings, report.write_report(spark, settings, out)


def run_chromium(tmp_path, target: str, *extra: str) -> subprocess.CompletedProcess:
    """Headless Chromium, offline (every host name fails to resolve), logging the page's
    console to stderr."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
         "--hide-scrollbars", *extra, target],
        capture_output=True, text=True, timeout=120, check=False)


def console_messages(stderr: str) -> list[str]:
    """Lines Chromium logged from the page's console (errors, uncaught exceptions, failed
    loads); its own noise (dbus, GPU) is not the page's."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="headless Chromium is not installed: apt-get install -y chromium (Debian's "
           "package) to check the report renders")


def test_the_report_is_one_self_contained_file(written):
    _, path = written
    text = path.read_text()
    assert path.name == "report.html" and text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") == NUM_CHARTS
    lowered = text.lower()
    for outside in ("<script", "<link", "<img", "<iframe", "src=", "url(", "@import"):
        assert outside not in lowered, outside  # nothing to fetch, nothing to run
    for section in ("The data", "ALS against baselines", "the served lists against most-rated",
                    "Where the error is", "Tuning grid", "Metric history"):
        assert section in text


def test_the_terminal_summary_names_the_headline_numbers(spark, written):
    """The summary's numbers, worked out here from the tables the fixture wrote: ratings,
    predictions and the tuning grid (whose best cell is rank 20, regParam 0.1, at 0.85)."""
    settings, _ = written
    lines = report.summary_lines(report.gather(spark, settings))
    ratings = spark.table("movielens.ratings").collect()
    movies = {r.movie_id for r in ratings}
    density = len(ratings) / (120 * len(movies))
    assert lines[0] == (f"data: {len(ratings):,} ratings by 120 users on {len(movies):,} "
                        f"movies (density {density * 100:.2f}%)")
    errors = [r.prediction - r.rating for r in spark.table("movielens.predictions").collect()]
    als_rmse = math.sqrt(sum(e * e for e in errors) / len(errors))
    assert lines[1].startswith(f"test RMSE: ALS {als_rmse:.4f}, best baseline "), lines[1]
    assert lines[2].startswith("lists served by implicit_als") and "NDCG@10 " in lines[2] \
        and "lift" in lines[2]
    assert lines[3:] == ["tuning: best rank 20, regParam 0.1 (validation RMSE 0.8500)"]


@needs_chromium
def test_the_report_opens_offline_in_chromium_with_no_console_errors(written, tmp_path):
    _, path = written
    dom = run_chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    assert dom.stdout.count("<svg") == NUM_CHARTS  # every chart is in the rendered page
    shot = tmp_path / "report.png"
    screenshot = run_chromium(tmp_path, path.as_uri(), f"--screenshot={shot}",
                              "--window-size=1280,5200")
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert console_messages(screenshot.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    keep = os.environ.get("REELHOUSE_REPORT_SCREENSHOT")  # to look at it: set a path
    if keep:
        shutil.copy(shot, keep)


@needs_chromium
def test_the_console_check_sees_a_page_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction();</script>"
                    '<img src="http://example.com/x.png">')
    messages = console_messages(run_chromium(tmp_path, page.as_uri(), "--dump-dom").stderr)
    assert any("Uncaught ReferenceError" in line for line in messages)


def test_sections_without_their_tables_say_what_to_run():
    page = report_page.render_html({"generated_at": "now", "warehouse": "/w"})
    assert "reelhouse build" in page and "reelhouse train" in page
    assert "reelhouse evaluate" in page and "reelhouse tune" in page
    assert "<svg" not in page


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 0.87, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0.81, 0.86, [0.81, 0.82, 0.83, 0.84, 0.85, 0.86]),
    (0, 1040, [0, 250, 500, 750, 1000, 1250]),
])
def test_axis_ticks_are_round_and_cover_the_data(low, high, expected):
    assert charts.nice_ticks(low, high) == pytest.approx(expected)


def test_a_run_leaves_a_report_made_from_the_same_table_versions_as_it_is(
        spark, written, tmp_path):
    settings, _ = written
    out = tmp_path / "report"
    path = report.write_report(spark, settings, out, only_if_changed=True)
    path.write_text(path.read_text() + "<!-- kept -->")  # marks this copy of the file
    assert report.write_report(spark, settings, out, only_if_changed=True) == path
    assert path.read_text().endswith("<!-- kept -->")
    # `reelhouse report` (no flag) always writes it again.
    report.write_report(spark, settings, out)
    assert not path.read_text().endswith("<!-- kept -->")
    # A new version of any table it reads (here one with no row changed) makes it stale.
    path.write_text(path.read_text() + "<!-- kept -->")
    spark.sql("alter table movielens.sparsity set tblproperties ('reelhouse.touched' = '1')")
    report.write_report(spark, settings, out, only_if_changed=True)
    assert not path.read_text().endswith("<!-- kept -->")
    assert path.read_text().startswith("<!DOCTYPE html>")


def test_a_ranking_tune_is_drawn_with_higher_ndcg_as_best():
    """The heat map of a ranking tune outlines the highest validation NDCG@10, not the
    lowest (pure Python: the rows as gather returns them)."""
    trials = [{"tune_id": "tune-2", "objective": "ranking", "rank": rank, "reg_param": reg,
               "validation_rmse": None, "validation_ndcg_at_10": 0.2 + rank / 1000 - reg / 10,
               "num_trials": 1} for rank in (32, 64) for reg in (0.1, 0.3)]
    html = report_page.section_tuning({"tuning": trials})
    assert "Validation NDCG@10 by rank and regParam" in html
    assert "Best: rank 64, regParam 0.1 (0.2540)" in html
    assert html.count('stroke="#d62728"') == 1  # one cell outlined
