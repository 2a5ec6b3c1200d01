"""pipeline_runs holds one row per run, even when a run recorded itself and was then killed
before releasing the lock: the run that takes the lock over records it as killed, and that
second record must not land."""

from __future__ import annotations

from datetime import datetime

from pipelines import pipeline


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
