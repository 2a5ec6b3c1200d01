"""The Thrift server for real: started as `reelhouse serve`, queried by PyHive (SQLAlchemy's
hive:// URL, as Superset does) and by beeline, while this process writes to the warehouse."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from pipelines import (
    delta_log,
    fingerprints,
    ingest,
    pipeline,
    registration,
    runner,
    serve,
    sql_project,
    writes,
)
from pipelines.errors import ReelhouseError
from tests.conftest import (
    REELHOUSE,
    beeline,
    free_port,
    fresh_warehouse,
    latest_folder,
    query,
    reelhouse_env,
    start_server,
    stop_server,
    wait_for_ready,
)

# What ingest writes: the tables a warehouse holds before anything is built.
INGESTED_TABLES = {"ingest_files", "raw_genres", "raw_links", "raw_movies", "raw_ratings",
                   "raw_splits", "raw_tags", "raw_users"}


@pytest.fixture(scope="module")
def server(spark, tmp_path_factory):
    settings = fresh_warehouse(spark, tmp_path_factory, "served")
    ingest.ingest_dataset(spark, settings, latest_folder(tmp_path_factory.mktemp("data")))
    port = free_port()
    process = start_server(settings.warehouse, port, "--refresh-seconds", "1")
    try:
        wait_for_ready(process)
        yield settings, port, process
    finally:
        stop_server(process)


def test_pyhive_sees_every_table_by_name_and_the_udfs(server):
    _, port, _ = server
    tables = {row[1] for row in query(port, "show tables in movielens")}
    assert tables == INGESTED_TABLES
    assert query(port, "select count(*) from movielens.raw_ratings") == [(3,)]
    assert query(port, "select movielens.clean_title('Matrix, The (1999)')") == [("The Matrix",)]


def test_beeline_queries_over_jdbc(server):
    _, port, _ = server
    assert beeline(port, "select count(*) as n from raw_movies")[-1] == "3"


def test_a_table_created_by_another_process_appears_without_restart(spark, server):
    settings, port, _ = server
    df = spark.createDataFrame([(1, "new")], "id int, label string")
    writes.replace_table(spark, settings, df, "fresh_table")
    assert eventually(port, "select label from movielens.fresh_table") == [("new",)]
    # A new commit to an existing table is seen by the next query, no refresh needed.
    writes.replace_table(spark, settings, spark.createDataFrame([(2, "newer")], df.schema),
                          "fresh_table")
    assert query(port, "select label from movielens.fresh_table") == [("newer",)]


def eventually(port: int, sql: str, done=lambda rows: rows is not None,
               seconds: float = 30) -> list[tuple] | None:
    """The query's rows once `done(rows)` holds, or the last answer after `seconds` (the
    server's catalog refresh catches up within a few ticks; until then the query may fail,
    None, or answer from the old catalog): the caller checks what it got. Only an error the
    server answered with counts as not there yet: a server that is gone fails the test."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            rows = query(port, sql)
        except DBAPIError:  # the server's answer: the name is not registered yet
            rows = None
        if done(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


def test_a_changed_view_and_a_dropped_table_reach_the_server(spark, server):
    """A refresh tick that finds storage unchanged does nothing: these changes must each be
    seen as a change."""
    settings, port, _ = server
    writes.create_view(spark, settings, "served_view", "select 1 as n")
    assert eventually(port, "select n from movielens.served_view") == [(1,)]
    writes.create_view(spark, settings, "served_view", "select 2 as n")  # same size, new SQL
    assert eventually(port, "select n from movielens.served_view",
                      lambda rows: rows == [(2,)]) == [(2,)]

    writes.replace_table(spark, settings, spark.createDataFrame([(1,)], "id int"),
                          "doomed_table")
    assert eventually(port, "select id from movielens.doomed_table") == [(1,)]
    writes.restore(spark, settings, "doomed_table", None)  # the table did not exist: drop it

    def dropped(rows):
        return rows is not None and "doomed_table" not in {row[1] for row in rows}

    tables = eventually(port, "show tables in movielens", dropped)
    # Gone, and only it: an empty or failed listing would not do.
    assert tables is not None and {row[1] for row in tables} == INGESTED_TABLES | {
        "fresh_table", "served_view"}


def reelhouse_run(settings, data, *extra, wait=True):
    command = REELHOUSE + ["run", "--warehouse", settings.warehouse, "--data", str(data),
                           "--steps", "ingest,build", "--select", "+ratings",
                           "--conf", "spark.ui.enabled=false", *extra]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env=reelhouse_env())
    return subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=reelhouse_env())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from pipelines.generate import generate_dataset

    folder = tmp_path_factory.mktemp("scheduled") / "ml-synthetic"
    meta = generate_dataset(folder, 3000, num_users=60, num_movies=200, seed=7)
    return folder, meta["num_ratings"]


def test_a_run_while_clients_query_and_a_second_run_is_refused(server, dataset):
    settings, port, _ = server
    folder, num_ratings = dataset
    before = 3  # latest_folder's ratings, ingested by the server fixture
    assert query(port, "select count(*) from movielens.raw_ratings") == [(before,)]
    first = reelhouse_run(settings, folder, wait=False)
    for line in first.stderr:  # the lock is held from here on
        if " started" in line:
            break
    second = reelhouse_run(settings, folder)
    assert second.returncode == 3, second.stderr[-1500:]
    assert "already running" in second.stderr

    seen, failures = set(), []
    while first.poll() is None:
        try:
            seen.add(query(port, "select count(*) from movielens.raw_ratings")[0][0])
        except Exception as exc:  # every query must succeed while the run writes
            failures.append(repr(exc))
        time.sleep(0.5)
    rest = first.stderr.read()
    assert first.returncode == 0, rest[-2000:]
    assert failures == []
    # Queries ran while the run wrote, and each saw the old table or the new one, never a part.
    assert seen and seen <= {before, num_ratings}, seen
    assert query(port, "select count(*) from movielens.raw_ratings") == [(num_ratings,)]
    deadline = time.monotonic() + 30  # the server picks up the run's new tables
    while time.monotonic() < deadline and not any(
            row[1] == "pipeline_runs" for row in query(port, "show tables in movielens")):
        time.sleep(1)
    assert query(port, "select count(*) from movielens.ratings") == [(num_ratings,)]
    assert query(port, "select status from movielens.pipeline_runs") == [("succeeded",)]


def test_a_run_with_nothing_new_changes_no_row(spark, server, dataset):
    settings, port, _ = server
    folder, _ = dataset
    registration.register_warehouse(spark, settings)
    versions = {t: delta_log.current_version(spark, settings, t)
                for t in ("raw_ratings", "ratings")}
    result = reelhouse_run(settings, folder)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "no new or changed files" in result.stderr
    assert {t: delta_log.current_version(spark, settings, t) for t in versions} == versions


MERGE_METRICS = ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted",
                 "numTargetRowsCopied", "numTargetFilesRemoved")


def last_ratings_merge(spark, settings) -> dict[str, int]:
    """The newest commit of ratings must be its MERGE, then the fingerprint (one ALTER, which
    also proves the YAML docs needed no change): that MERGE's row metrics."""
    history = spark.sql("describe history movielens.ratings").collect()
    assert [h.operation for h in history[:2]] == ["SET TBLPROPERTIES", "MERGE"]
    return {key: int(history[1].operationMetrics[key]) for key in MERGE_METRICS}


def assert_ratings_is_a_full_rebuild(spark, settings):
    """ratings, as merged, equals its query's full result (the staging rows, deduplicated),
    and carries the docs and the fingerprint of the inputs it was built from."""
    project = sql_project.load_project(settings, folders=("models",))
    model = project.models["ratings"]
    sql = fingerprints.render(project, model)
    full, table = spark.sql(sql), spark.table("movielens.ratings")
    assert full.exceptAll(table).count() == 0 and table.exceptAll(full).count() == 0
    assert delta_log.table_property(spark, settings, "ratings", fingerprints.PROPERTY) == \
        fingerprints.fingerprint(spark, project, model, sql)
    assert spark.catalog.getTable("movielens.ratings").description == model.description
    assert table.schema["rating"].metadata["comment"] == \
        model.column_docs["rating"]["description"]


def test_a_new_ratings_file_adds_exactly_its_rows(spark, server, dataset):
    settings, port, _ = server
    folder, num_ratings = dataset
    (folder / "ratings-late.csv").write_text(
        "userId,movieId,rating,timestamp\n9001,1,4.5,1700000000\n9001,2,3.0,1700000001\n")
    result = reelhouse_run(settings, folder)
    assert result.returncode == 0, result.stderr[-1500:]
    assert query(port, "select count(*) from movielens.ratings") == [(num_ratings + 2,)]
    assert query(port, "select count(*) from movielens.pipeline_runs "
                       "where status = 'succeeded'") == [(3,)]
    # Row for row: the MERGE inserted the two new pairs and neither updated, deleted nor
    # rewrote (copied) any of the rows already there.
    registration.register_warehouse(spark, settings)
    assert last_ratings_merge(spark, settings) == {
        "numTargetRowsInserted": 2, "numTargetRowsUpdated": 0, "numTargetRowsDeleted": 0,
        "numTargetRowsCopied": 0, "numTargetFilesRemoved": 0}
    assert_ratings_is_a_full_rebuild(spark, settings)


def test_a_replaced_ratings_file_updates_and_deletes_exactly_its_rows(spark, server, dataset):
    settings, port, _ = server
    folder, num_ratings = dataset
    # The late file again, corrected: (9001, 1) re-rated, (9001, 2) gone, nothing new.
    (folder / "ratings-late.csv").write_text(
        "userId,movieId,rating,timestamp\n9001,1,2.0,1700000100\n")
    registration.register_warehouse(spark, settings)
    ingest.ingest_dataset(spark, settings, folder)
    runner.build(spark, sql_project.load_project(settings, folders=("models",)), ["+ratings"])
    merged = last_ratings_merge(spark, settings)
    # (The file the late rows were in goes, both its rows having changed: removed, not copied.)
    assert {key: merged[key] for key in MERGE_METRICS[:4]} == {
        "numTargetRowsInserted": 0, "numTargetRowsUpdated": 1, "numTargetRowsDeleted": 1,
        "numTargetRowsCopied": 0}
    assert_ratings_is_a_full_rebuild(spark, settings)
    assert query(port, "select rating from movielens.ratings where user_id = 9001") == [(2.0,)]
    assert query(port, "select count(*) from movielens.ratings") == [(num_ratings + 1,)]
    # Inputs changed with no train after them (as when a run is killed between build and
    # train): the next run must train, though it will have nothing left to rebuild.
    assert pipeline.needs_training(spark, settings)


def test_sigterm_stops_the_server_cleanly(server):
    _, port, process = server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == 0
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_non_loopback_address_is_refused_without_authentication(tmp_path: Path):
    from pipelines.settings import Settings

    with pytest.raises(ReelhouseError, match="without a password"):
        serve.serve(Settings(warehouse=str(tmp_path)), host="0.0.0.0", port=free_port())
