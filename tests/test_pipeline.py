"""`reelhouse run` as one unit: a run that fails leaves every table as it found it, and
pipeline_runs holds one row per run, even when a run recorded itself and was then killed
before releasing the lock (the run that takes the lock over records it as killed, and that
second record must not land)."""

from __future__ import annotations

import json
import socket
import subprocess
from datetime import datetime

import pytest

from pipelines import delta_log, lock, pipeline, storage
from pipelines.errors import ReelhouseError
from pipelines.generate import generate_dataset


def run_row(run_id: str, status: str) -> dict:
    now = datetime(2026, 11, 28, 12, 0, 0)
    return {"run_id": run_id, "started_at": now, "finished_at": now, "status": status,
            "data_dir": "/data", "step_seconds": {"ingest": 1.5}, "row_counts": {"x": 3},
            "models_rebuilt": ["ratings"], "error_message": None}


def test_a_run_is_recorded_once_whoever_records_it(spark, new_warehouse):
    settings = new_warehouse()
    pipeline.record_run(spark, settings, run_row("run-a", "succeeded"))
    # Run a recorded itself, then died holding the lock: the next run records it as killed.
    pipeline.record_abandoned_run(spark, settings, {"run_id": "run-a", "pid": 1, "host": "h",
                                                    "started_at": "2026-11-28T12:00:00+00:00"})
    # Run b was killed before recording itself: the takeover's record is its only row.
    pipeline.record_abandoned_run(spark, settings, {"run_id": "run-b", "pid": 2, "host": "h",
                                                    "started_at": "2026-11-28T12:05:00+00:00"})
    pipeline.record_run(spark, settings, run_row("run-c", "failed"))
    rows = spark.sql("select run_id, status, step_seconds, models_rebuilt "
                     "from movielens.pipeline_runs order by run_id").collect()
    assert [(r.run_id, r.status) for r in rows] == [
        ("run-a", "succeeded"), ("run-b", "killed"), ("run-c", "failed")]
    assert rows[0].step_seconds == {"ingest": 1.5} and rows[0].models_rebuilt == ["ratings"]
    comment = spark.catalog.getTable("movielens.pipeline_runs").description
    assert comment.startswith("Every pipeline run")


def test_killed_runs_are_handed_on_with_the_lock_until_a_run_records_them(spark, new_warehouse):
    settings = new_warehouse()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid whose process has ended: its lock is stale
    # Run k2 took over k1's lock and was killed too, before it could record k1.
    path = lock.lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "run_id": "run-k2", "host": socket.gethostname(), "pid": gone.pid,
        "started_at": "2026-11-28T12:05:00+00:00",
        "abandoned": [{"run_id": "run-k1", "host": socket.gethostname(), "pid": 1,
                       "started_at": "2026-11-28T12:00:00+00:00"}]}))
    with lock.run_lock(settings, "run-3") as abandoned:
        assert [holder["run_id"] for holder in abandoned] == ["run-k2", "run-k1"]
        # Were run 3 killed now, the next run would find both in the lock it takes over.
        assert json.loads(path.read_text())["abandoned"] == abandoned
        pipeline.run_pipeline(spark, settings, settings.target_dir, "run-3", steps=(),
                              abandoned=abandoned)
    assert not path.exists()
    rows = spark.sql("select run_id, status, started_at from movielens.pipeline_runs "
                     "order by run_id").collect()
    assert [(r.run_id, r.status) for r in rows] == [
        ("run-3", "succeeded"), ("run-k1", "killed"), ("run-k2", "killed")]
    assert rows[1].started_at == datetime(2026, 11, 28, 12, 0, 0)


def test_a_failed_run_puts_back_what_its_earlier_steps_committed(spark, new_warehouse, tmp_path):
    settings = new_warehouse()
    data = tmp_path / "ml-synthetic"
    generate_dataset(data, 300, num_users=20, num_movies=30, seed=5)
    pipeline.run_pipeline(spark, settings, data, "run-1", steps=("ingest",))
    versions = {t: delta_log.current_version(spark, settings, t)
                for t in ("raw_ratings", "ingest_files")}
    counts = {t: spark.table(f"movielens.{t}").count() for t in versions}
    header = (data / "ratings.csv").read_text().splitlines()[0]
    (data / "ratings-more.csv").write_text(f"{header}\n1,2,4.0,1000\n2,3,3.5,1001\n")
    # Ingest commits the new file, then the build fails: ingest_summary alone, with the
    # models it reads never built.
    with pytest.raises(ReelhouseError, match="ingest_summary"):
        pipeline.run_pipeline(spark, settings, data, "run-2", steps=("ingest", "build"),
                              selectors=["ingest_summary"])
    for table, version in versions.items():
        assert delta_log.current_version(spark, settings, table) > version  # ingest had committed
        assert spark.table(f"movielens.{table}").count() == counts[table]  # and is put back
    assert storage.list_tables_on_storage(spark, settings) == [
        "ingest_files", "pipeline_runs", "raw_genres", "raw_links", "raw_movies", "raw_ratings",
        "raw_splits", "raw_tags", "raw_users"]
    runs = {r.run_id: r for r in spark.table("movielens.pipeline_runs").collect()}
    assert runs["run-1"].status == "succeeded" and runs["run-2"].status == "failed"
    assert "ingest_summary" in runs["run-2"].error_message


def test_a_plain_install_carries_the_sql_project_and_a_project_dir_replaces_it(
        installed_reelhouse, tmp_path):
    """`pip install .` ships the models, macros, tests and functions: from an empty folder the
    installed `reelhouse` compiles every model the checkout has (the full run from an installed
    package is test_real_data's). --project-dir points it at a user's own copy instead."""
    from pipelines.settings import CHECKOUT_DIR

    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([str(installed_reelhouse), "compile"], cwd=empty,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    compiled = {path.stem for path in (empty / "target" / "compiled").rglob("*.sql")
                if path.parent.name != "tests"}
    checkout_models = {path.stem for folder in ("models", "reports")
                       for path in (CHECKOUT_DIR / "sql" / folder).rglob("*.sql")}
    assert compiled == checkout_models
    tests = list((empty / "target" / "compiled" / "tests").glob("*.sql"))
    assert len(tests) > 100  # the YAML's generic tests rendered from the packaged macros

    mine = tmp_path / "my_project"
    (mine / "models").mkdir(parents=True)
    (mine / "reelhouse_project.yml").write_text("folders:\n  models:\n    +tags: [build]\n")
    (mine / "models" / "answer.sql").write_text("select 42 as answer")
    done = subprocess.run([str(installed_reelhouse), "compile", "--project-dir", str(mine)],
                          cwd=empty, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (empty / "target" / "compiled" / "models" / "answer.sql").read_text().strip() == \
        "select 42 as answer"
