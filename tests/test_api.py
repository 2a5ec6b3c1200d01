"""`reelhouse api` for real: a warehouse built by the pipeline, the API in its own process,
queried over HTTP by httpx (every endpoint, every bad input), a train finishing while requests
stream in, the token, and the page at / driven in Debian's headless chromium by Playwright."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from pipelines import als, pipeline, served_model, train
from pipelines import settings as settings_module
from tests.conftest import REELHOUSE, free_port, fresh_warehouse, reelhouse_env

CHROMIUM = "/usr/bin/chromium"
# Real titles on the three most-rated synthetic movies, for the search and the page.
TITLES = {0: ("Shawshank Redemption, The (1994)", "The Shawshank Redemption"),
          1: ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "Amélie"),
          2: ("Toy Story (1995)", "Toy Story")}


def rename_top_movies(folder: Path) -> list[int]:
    """Give the dataset's three most-rated movies real titles; their ids, most rated first."""
    with open(folder / "ratings.csv", newline="") as handle:
        counts = Counter(int(row["movieId"]) for row in csv.DictReader(handle))
    top = [movie for movie, _ in counts.most_common(3)]
    path = folder / "movies.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1:]:
        if row[0].isdigit() and int(row[0]) in top:
            row[1] = TITLES[top.index(int(row[0]))][0]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return top


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """A warehouse made by ingest, build, train and evaluate: (settings, famous movie ids)."""
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("api-data") / "ml-synthetic"
    generate_dataset(folder, 4000, num_users=80, num_movies=150, seed=11)
    famous = rename_top_movies(folder)
    settings = fresh_warehouse(spark, tmp_path_factory, "api")
    pipeline.run_pipeline(spark, settings, folder, "api-build",
                          steps=("ingest", "build", "train", "evaluate"))
    return settings, famous


def start_api(warehouse: str, *options: str, env: dict | None = None,
              command: list[str] = REELHOUSE, cwd: Path | None = None):
    """`reelhouse api` in its own process; (process, base URL) once it accepts requests."""
    port = free_port()
    process = subprocess.Popen(
        command + ["api", "--warehouse", warehouse, "--port", str(port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**reelhouse_env(), **(env or {})})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("READY "):
            return process, f"http://127.0.0.1:{port}"
        if not line and process.poll() is not None:
            raise AssertionError(f"api exited with {process.returncode}: "
                                 f"{process.stderr.read()[-2000:]}")
    raise AssertionError("api did not start in time")


def stop(process) -> str:
    """SIGTERM, and what the process said on stderr."""
    process.terminate()
    _, err = process.communicate(timeout=30)
    return err


@pytest.fixture(scope="module")
def api(built):
    settings, famous = built
    process, url = start_api(settings.warehouse, "--reload-seconds", "0.3")
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield settings, famous, client
    finally:
        stop(process)


def stored_lists(spark, run_id: str) -> dict[int, list[int]]:
    """Each user's served list as the run wrote it (Spark, for comparison)."""
    lists: dict[int, list[int]] = {}
    for row in spark.sql(f"select user_id, movie_id from movielens.recommendations "
                         f"where run_id = '{run_id}' order by user_id, rank").collect():
        lists.setdefault(row.user_id, []).append(row.movie_id)
    return lists


def rated(spark, user_id: int) -> set[int]:
    return {r.movie_id for r in spark.sql(
        f"select movie_id from movielens.ratings where user_id = {user_id}").collect()}


# --- every endpoint ---------------------------------------------------------------------------

def test_health_names_the_served_run_and_its_metrics(spark, api):
    _, _, client = api
    body = client.get("/health").json()
    latest = spark.sql("select run_id, rmse from movielens.model_runs "
                       "order by finished_at desc limit 1").first()
    assert body["status"] == "ok" and body["run_id"] == latest.run_id
    assert body["metrics"]["rmse"] == pytest.approx(latest.rmse)
    served = spark.sql(f"select ndcg_at_k from movielens.ranking_metrics where served "
                       f"and relevance = 'any' and k = 10 and run_id = '{latest.run_id}'").first()
    assert body["metrics"]["ndcg_at_10_served"] == pytest.approx(served.ndcg_at_k)
    assert body["rating_scale"] == [0.5, 5.0] and body["users"] == 80


def test_search_is_case_and_accent_blind_with_statistics(spark, api):
    _, famous, client = api
    for query, movie in (("shawshank", famous[0]), ("SHAWSHANK redemp", famous[0]),
                         ("amelie", famous[1]), ("Amélie", famous[1]), ("toy story", famous[2])):
        body = client.get("/movies", params={"q": query, "limit": 5}).json()
        assert body["items"][0]["movie_id"] == movie, (query, body)
    first = client.get("/movies", params={"q": "shawshank"}).json()["items"][0]
    stats = spark.sql(f"select * from movielens.movie_stats where movie_id = {famous[0]}").first()
    assert first["title"] == "The Shawshank Redemption" and first["year"] == 1994
    assert first["genres"] == list(stats.genres)
    assert (first["num_ratings"], first["avg_rating"]) == (stats.num_ratings,
                                                          pytest.approx(stats.avg_rating))
    assert client.get("/movies", params={"q": "zzzz no such title"}).json()["items"] == []
    assert len(client.get("/movies", params={"q": "e", "limit": 3}).json()["items"]) == 3


def test_one_movie_and_its_similar_movies(spark, api):
    _, famous, client = api
    body = client.get(f"/movies/{famous[2]}").json()
    assert body["title"] == "Toy Story" and body["run_id"]
    similar = client.get(f"/movies/{famous[2]}/similar", params={"n": 5}).json()
    expected = [r.similar_movie_id for r in spark.sql(
        f"select similar_movie_id from movielens.similar_movies where movie_id = {famous[2]} "
        "order by rank limit 5").collect()]
    assert [i["movie_id"] for i in similar["items"]] == expected and len(expected) == 5
    assert similar["movie"]["movie_id"] == famous[2] and similar["run_id"] == body["run_id"]
    scores = [i["score"] for i in similar["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_a_users_list_is_the_served_list_and_never_a_rated_movie(spark, api):
    _, _, client = api
    run_id = client.get("/health").json()["run_id"]
    lists = stored_lists(spark, run_id)
    for user in (1, 2, 40, 80):
        body = client.get(f"/users/{user}/recommendations").json()
        ids = [i["movie_id"] for i in body["items"]]
        assert body["run_id"] == run_id and ids == lists[user] and len(ids) == 10
        assert not set(ids) & rated(spark, user)
        assert body["source"] == "implicit_als" and [i["rank"] for i in body["items"]] == \
            list(range(1, 11))
        assert all(i["title"] and isinstance(i["genres"], list) for i in body["items"])
    assert len(client.get("/users/1/recommendations", params={"n": 3}).json()["items"]) == 3


def test_predict_equals_the_sql_rating_estimate(spark, api):
    _, famous, client = api
    expected = spark.sql(f"select estimate from movielens.rating_estimates "
                         f"where user_id = 5 and movie_id = {famous[0]}").first().estimate
    body = client.get("/predict", params={"user_id": 5, "movie_id": famous[0]}).json()
    assert body["estimate"] == pytest.approx(expected, abs=1e-9)
    assert body["source"] == "rating_model" and body["run_id"]


def test_fold_in_explains_each_pick_and_equals_reelhouse_recommend(api, tmp_path):
    settings, famous, client = api
    ratings = [(famous[0], 5.0), (famous[1], 4.5), (famous[2], 1.0)]
    body = client.post("/recommendations", json={
        "ratings": [{"movie_id": m, "rating": r} for m, r in ratings], "n": 10}).json()
    ids = [i["movie_id"] for i in body["items"]]
    assert len(ids) == len(set(ids)) == 10 and not set(ids) & set(famous)
    assert all(i["because"]["movie_id"] in famous for i in body["items"])
    assert body["left_out"] == [] and body["source"] == "fold_in"
    path = tmp_path / "mine.csv"
    path.write_text("movie_id,rating\n" + "".join(f"{m},{r}\n" for m, r in ratings))
    cli = subprocess.run(REELHOUSE + ["recommend", "--warehouse", settings.warehouse,
                                      "--ratings", str(path), "--format", "json"],
                         capture_output=True, text=True, timeout=120, env=reelhouse_env())
    assert cli.returncode == 0, cli.stderr
    listed = json.loads(cli.stdout)
    assert [(r["movie_id"], r["because"]["movie_id"]) for r in listed] == \
        [(i["movie_id"], i["because"]["movie_id"]) for i in body["items"]]
    assert [r["score"] for r in listed] == pytest.approx([i["score"] for i in body["items"]])
    # the order of the ratings does not matter
    backwards = client.post("/recommendations", json={
        "ratings": [{"movie_id": m, "rating": r} for m, r in reversed(ratings)], "n": 10}).json()
    assert backwards["items"] == body["items"]


def test_fold_in_of_a_known_user_gives_back_their_trained_factors(spark, built):
    """The serving model was fit on every rating: a user folded in with all of them lands
    where ALS put them."""
    settings, _ = built
    own = [(r.movie_id, r.rating) for r in spark.sql(
        "select movie_id, rating from movielens.ratings where user_id = 9").collect()]
    placed = served_model.load(settings).place_user(own)
    trained = spark.sql("select factors from movielens.user_factors where id = 9").first()
    assert placed["factors"] == pytest.approx(np.array(trained.factors), abs=2e-3)


def test_the_numpy_confidence_is_the_one_training_uses(spark):
    ratings = [0.5, 1.0, 3.5, 4.0, 4.5, 5.0]
    for confidence in als.CONFIDENCES:
        params = als.TrainParams(implicit=True, confidence=confidence)
        sql = [r[0] for r in spark.sql(
            f"select {als.implicit_value_sql(params)} from values {', '.join(map(str, ratings))}"
            " as t(rating)").collect()]
        numpy = served_model.implicit_value(
            {"confidence": confidence, "confidence_threshold": 4.0}, np.array(ratings))
        assert list(numpy) == pytest.approx(sql), confidence


def test_openapi_document_and_docs_are_served(api):
    _, _, client = api
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/health", "/movies", "/movies/{movie_id}",
                                  "/movies/{movie_id}/similar",
                                  "/users/{user_id}/recommendations", "/recommendations",
                                  "/predict"}
    assert "NewUser" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body, status, message", [
    ("GET", "/movies/999999", None, 404, "Movie 999999 is not in the warehouse"),
    ("GET", "/movies/999999/similar", None, 404, "Movie 999999 is not in the warehouse"),
    ("GET", "/users/999999/recommendations", None, 404, "User 999999 is not in the warehouse"),
    ("GET", "/predict?user_id=999999&movie_id=1", None, 404, "User 999999 is not"),
    ("GET", "/no/such/page", None, 404, "There is no /no/such/page here"),
    ("GET", "/movies/abc", None, 422, "movie_id must be a whole number, got 'abc'"),
    ("GET", "/users/1.5/recommendations", None, 422, "user_id must be a whole number"),
    ("GET", "/users/1/recommendations?n=0", None, 422, "n must be at least 1, got '0'"),
    ("GET", "/users/1/recommendations?n=11", None, 422, "kept 10 per list"),
    ("GET", "/movies?q=", None, 422, "q must not be empty"),
    ("GET", "/movies?q=%20!", None, 422, "Give some words of a title"),
    ("GET", "/predict?user_id=1", None, 422, "movie_id is required"),
    ("POST", "/recommendations", "{not json", 422, "not valid JSON"),
    ("POST", "/recommendations", "[1, 2]", 422, "must be a JSON object"),
    ("POST", "/recommendations", {"ratings": []}, 422, "Give at least one rating"),
    ("POST", "/recommendations", {"ratings": [{"movie_id": "x", "rating": 4}]}, 422,
     "movie_id must be a whole number, got 'x'"),
    ("POST", "/recommendations", {"ratings": [{"movie_id": 1.5, "rating": 4}]}, 422,
     "movie_id must be a whole number"),
    ("POST", "/recommendations", {"ratings": [{"movie_id": 1, "rating": "good"}]}, 422,
     "rating must be a number, got 'good'"),
    ("POST", "/recommendations", {"ratings": [{"movie_id": 1, "rating": 4, "x": 1}]}, 422,
     "x is not a field"),
    ("POST", "/recommendations", {"ratings": [{"movie_id": 1}]}, 422,
     "ratings[0].rating is required"),
    ("POST", "/recommendations", {"ratings": [1]}, 422, "ratings[0] must be an object like"),
    ("POST", "/recommendations", {"ratings": {"1": 4}}, 422, "ratings must be a list"),
    ("PUT", "/recommendations", {}, 405, "PUT is not allowed on /recommendations"),
])
def test_bad_requests_get_one_sentence_and_a_4xx(api, method, path, body, status, message):
    _, _, client = api
    if isinstance(body, str):
        response = client.request(method, path, content=body,
                                  headers={"content-type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error and "Traceback" not in error, error


def test_fold_in_refuses_what_the_model_cannot_take(api):
    _, famous, client = api

    def post(ratings, n=10):
        return client.post("/recommendations", json={
            "ratings": [{"movie_id": m, "rating": r} for m, r in ratings], "n": n})

    for ratings, message in (
            ([(famous[0], 5.5)], f"Movie {famous[0]} is rated 5.5, outside this dataset's "
                                 "scale 0.5-5"),
            ([(famous[0], 0.0)], "outside this dataset's scale"),
            ([(famous[0], 4.0), (famous[0], 3.0)], f"Movie {famous[0]} is rated twice"),
            ([(424242, 4.0)], "Movie 424242 is not in the warehouse")):
        response = post(ratings)
        assert response.status_code == 422 and message in response.json()["error"], \
            response.text
    too_many = client.post("/recommendations", json={
        "ratings": [{"movie_id": m, "rating": 3.0} for m in range(1, 1002)]})
    assert too_many.status_code == 422
    assert too_many.json()["error"] == \
        "ratings holds 1,001 items, more than the 1,000 one request may have."
    assert post([(famous[0], 4.0)], n=101).status_code == 422


def test_a_warehouse_gone_after_loading_is_a_stale_503_while_the_run_is_served(built,
                                                                              tmp_path):
    settings, _ = built
    copy = tmp_path / "warehouse"
    shutil.copytree(settings.warehouse, copy)
    process, url = start_api(str(copy), "--reload-seconds", "0.2")
    try:
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        shutil.rmtree(copy)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/health").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = httpx.get(f"{url}/health")
        assert health.status_code == 503 and health.json()["status"] == "stale"
        assert health.json()["run_id"] and health.json()["error"]
        served = httpx.get(f"{url}/users/1/recommendations")  # the loaded run, still served
        assert served.status_code == 200 and len(served.json()["items"]) == 10
    finally:
        err = stop(process)
    assert "Traceback" not in err


def test_a_missing_warehouse_is_a_503_and_the_process_keeps_running(tmp_path):
    process, url = start_api(str(tmp_path / "nothing-here"), "--reload-seconds", "0.2")
    try:
        for _ in range(2):
            health = httpx.get(f"{url}/health")
            assert health.status_code == 503
            assert "No model has been trained" in health.json()["error"]
            listing = httpx.get(f"{url}/users/1/recommendations")
            assert listing.status_code == 503 and "reelhouse run" in listing.json()["error"]
            time.sleep(0.5)
        assert process.poll() is None
    finally:
        err = stop(process)
    assert "Traceback" not in err


# --- access -----------------------------------------------------------------------------------

def test_beyond_loopback_a_token_is_required_unless_no_auth(built, tmp_path):
    settings, _ = built
    refused = subprocess.run(REELHOUSE + ["api", "--warehouse", settings.warehouse,
                                          "--host", "0.0.0.0", "--port", str(free_port())],
                             capture_output=True, text=True, timeout=60, env=reelhouse_env())
    assert refused.returncode == 1
    assert "REELHOUSE_API_TOKEN or pass --token-file" in refused.stderr
    assert "Traceback" not in refused.stderr

    process, url = start_api(settings.warehouse, "--host", "0.0.0.0", "--no-auth")
    try:
        assert httpx.get(f"{url}/users/1/recommendations").status_code == 200
    finally:
        err = stop(process)
    assert "WARNING: serving on 0.0.0.0 with no authentication" in err


def test_the_token_is_refused_and_accepted(built, tmp_path):
    settings, _ = built
    token = "s3cret-token-" + "x" * 20
    (tmp_path / "token").write_text(token + "\n")
    process, url = start_api(settings.warehouse, "--host", "0.0.0.0",
                             "--token-file", str(tmp_path / "token"))
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            response = httpx.get(f"{url}/users/1/recommendations", headers=headers)
            assert response.status_code == 401, headers
            assert "Authorization: Bearer" in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        for good in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"bearer {token}"}):
            assert httpx.get(f"{url}/users/1/recommendations", headers=good).status_code == 200
        assert httpx.post(f"{url}/recommendations", headers={"Authorization": "Bearer no"},
                          json={"ratings": []}).status_code == 401
        assert httpx.get(f"{url}/").status_code == 200  # the page asks for the token itself
    finally:
        stop(process)
    env_process, env_url = start_api(settings.warehouse, env={"REELHOUSE_API_TOKEN": token})
    try:
        assert httpx.get(f"{env_url}/movies/1").status_code == 401
    finally:
        stop(env_process)


def test_a_plain_install_serves_the_api_and_its_page(built, installed_reelhouse, tmp_path):
    """The page's files ship in the package: `pip install .` (not editable), run from an
    empty folder."""
    settings, _ = built
    process, url = start_api(settings.warehouse, command=[str(installed_reelhouse)],
                             cwd=tmp_path)
    try:
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and '<script src="page.js"' in page.text
        for asset, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
            served = httpx.get(f"{url}/{asset}")
            assert served.status_code == 200 and served.headers["content-type"].startswith(kind)
        assert httpx.get(f"{url}/users/1/recommendations").status_code == 200
    finally:
        stop(process)


# --- the page, in a real browser ---------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed: apt-get install -y chromium (Debian's "
           "package; ./dev.sh test installs it)")


@needs_chromium
def test_the_page_searches_rates_and_recommends_in_chromium(spark, api):
    from playwright.sync_api import sync_playwright

    _, famous, client = api
    problems: list[str] = []
    shot = settings_module.CHECKOUT_DIR / "target" / "test-artifacts" / "api-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("console", lambda m: problems.append(m.text) if m.type in (
                "error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(str(client.base_url) + "/")
            page.wait_for_function("document.getElementById('model-run').textContent"
                                   ".startsWith('Model run')")
            assert "NDCG@10" in page.text_content("#model-metrics")
            for query, movie in (("shawshank", famous[0]), ("amelie", famous[1]),
                                 ("toy story", famous[2])):
                page.fill("#search", query)
                page.press("#search", "Enter")
                result = page.locator(f"#results li[data-movie-id='{movie}']")
                result.locator("button.rate[data-rating='5']").click()
            assert page.locator("#rated li").count() == 3
            page.click("#recommend")
            page.wait_for_function(
                "document.querySelectorAll('#recommendations li').length === 10")
            shown = [int(x) for x in page.eval_on_selector_all(
                "#recommendations li", "items => items.map(li => li.dataset.movieId)")]
            reasons = page.eval_on_selector_all(
                "#recommendations .because", "items => items.map(e => e.textContent)")
            assert len(set(shown)) == 10 and not set(shown) & set(famous)
            assert len(reasons) == 10 and all(r.startswith("because you rated ") for r in reasons)
            page.locator("#recommendations li .title").first.click()
            page.wait_for_selector("#movie-panel:not([hidden]) #similar li")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = os.environ.get("REELHOUSE_API_SCREENSHOT")  # to look at it elsewhere: set a path
    if keep:
        shutil.copy(shot, keep)


# --- a new run, picked up while requests stream in (last: it changes the served model) ---

def test_a_new_run_is_served_without_restart_and_never_mixed(spark, api):
    settings, famous, client = api
    before = client.get("/health").json()["run_id"]
    expected = {before: stored_lists(spark, before)}
    users = [1, 7, 23, 51]
    fold_body = {"ratings": [{"movie_id": famous[0], "rating": 5.0},
                             {"movie_id": famous[2], "rating": 4.0}], "n": 10}
    seen: list[tuple[str, str, object]] = []
    stop_streaming = threading.Event()

    def stream():
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop_streaming.is_set():
                for user in users:
                    body = own.get(f"/users/{user}/recommendations").json()
                    seen.append((body["run_id"], f"user {user}",
                                 [i["movie_id"] for i in body["items"]]))
                body = own.post("/recommendations", json=fold_body).json()
                seen.append((body["run_id"], "fold-in",
                             [(i["movie_id"], round(i["score"], 9)) for i in body["items"]]))

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        # Another model: the list model with other settings, so every list changes.
        after = train.train(spark, settings, list_params=als.TrainParams(
            rank=8, max_iter=5, reg_param=0.2, implicit=True, alpha=3.0, seed=3))
        deadline = time.monotonic() + 30
        while not any(run == after for run, _, _ in seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # and some more requests on the new model
    finally:
        stop_streaming.set()
        streamer.join(timeout=60)
    assert {run for run, _, _ in seen} == {before, after}
    expected[after] = stored_lists(spark, after)
    folds = {}
    for run, what, answer in seen:
        if what == "fold-in":
            folds.setdefault(run, set()).add(tuple(answer))
        else:
            assert answer == expected[run][int(what.split()[1])], (run, what)
    # one fold-in answer per model: every answer came whole from one of the two
    assert len(folds[before]) == len(folds[after]) == 1 and folds[before] != folds[after]
    assert client.get("/health").json()["run_id"] == after
    # once the new run answered, the old one never did again
    first_new = next(i for i, (run, _, _) in enumerate(seen) if run == after)
    assert all(run == after for run, _, _ in seen[first_new:])


# --- the bench command, once, small ----------------------------------------------------------

@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed: apt-get install -y wrk (./dev.sh test does)")
def test_the_api_bench_runs_and_counts_no_errors(built):
    settings, _ = built
    done = subprocess.run(
        [REELHOUSE[0], "-m", "bench.api", "--warehouse", f"smoke={settings.warehouse}",
         "--duration", "1", "--connections", "4", "--no-write"],
        capture_output=True, text=True, timeout=300, cwd=settings_module.CHECKOUT_DIR)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[6].strip() for row in rows] == [
        "GET /health", "GET /users/{id}/recommendations", "POST /recommendations (10 ratings)",
        "GET /movies?q="]
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert float(cells[7].replace(",", "")) > 0 and cells[11] == "0", row


def test_a_user_the_model_has_no_factors_for_gets_the_marked_fallback(spark, api):
    """A build after the run brings a new user (their ratings reach ratings_split, the model
    has not met them): the API picks the build up and serves them the most-rated list,
    without the movies they rated."""
    settings, famous, client = api
    from pipelines import writes

    newcomer = 5000
    rows = [(newcomer, m, 4.0, "train") for m in famous]
    split = spark.table("movielens.ratings_split")
    extra = spark.createDataFrame(rows, "user_id int, movie_id int, rating double, "
                                        "split string").selectExpr(
        "user_id", "movie_id", "rating", "current_timestamp() as rated_at", "split")
    writes.replace_table(spark, settings, split.unionByName(extra.select(*split.columns))
                         .localCheckpoint(), "ratings_split")
    deadline = time.monotonic() + 30
    while client.get(f"/users/{newcomer}/recommendations").status_code == 404 \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    body = client.get(f"/users/{newcomer}/recommendations").json()
    assert body["source"] == "most_rated" and len(body["items"]) == 10
    assert all(i["source"] == "most_rated" for i in body["items"])
    ids = [i["movie_id"] for i in body["items"]]
    assert not set(ids) & set(famous)
    popular = [r.movie_id for r in spark.sql(
        "select id as movie_id from movielens.movie_factors "
        "order by num_ratings desc, id limit 13").collect()]
    assert ids == [m for m in popular if m not in famous][:10]


def test_the_top_n_is_exact_with_ties_at_the_cut():
    """_top against a full sort by (score desc, id asc), with many ties, at sizes around its
    block bound."""
    rng = np.random.default_rng(3)
    for size in (5, 64, 640, 5000, 70_001):
        scores = rng.integers(0, 40, size).astype(np.float32)
        scores[rng.integers(0, size, size // 10)] = -np.inf  # masked (rated) movies
        ids = rng.permutation(size * 3)[:size]
        for n in (1, 10, 100):
            expected = sorted(range(size), key=lambda i: (-scores[i], ids[i]))[:n]
            assert list(served_model._top(scores, ids, n)) == expected, (size, n)
