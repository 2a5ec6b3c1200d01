"""`reelhouse run`: ingest -> build -> train -> evaluate -> report, as one unit.

If any step fails, every table goes back to the Delta version it had when the run started
(tables the run created are dropped), so a failed run leaves the warehouse exactly as it was.
Every run, whatever its end, gets a row in movielens.pipeline_runs.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipelines import (
    delta_log,
    evaluate,
    ingest,
    model_runs,
    naming,
    progress,
    registration,
    report,
    run_ids,
    sql_project,
    storage,
    train,
    writes,
)
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import STEPS, Settings

DEFAULT_SYNTHETIC_RATINGS = 100_000
RUNS_SCHEMA = ("run_id string, started_at timestamp, finished_at timestamp, status string, "
               "data_dir string, step_seconds map<string, double>, row_counts map<string, bigint>, "
               "models_rebuilt array<string>, error_message string")


@contextmanager
def all_or_nothing(spark, settings: Settings):
    """Remember every table's version; on failure restore them all and drop new ones."""
    before = {table: delta_log.current_version(spark, settings, table)
              for table in storage.list_tables_on_storage(spark, settings)}
    views_before = registration.stored_views(spark, settings)
    try:
        yield
    except BaseException:
        progress.say("the run failed: putting every table back to its version before the run")
        registration.put_back_views(spark, settings, views_before)
        registration.register_warehouse(spark, settings)
        failures = writes.restore_all(spark, settings, {
            table: before.get(table) for table in storage.list_tables_on_storage(spark, settings)
            if table != "pipeline_runs"})
        for table, error in failures.items():  # the others are restored: say what failed
            progress.say(f"could not restore {table}: {error}")
        raise


def default_dataset(project_dir: Path, num_ratings: int = DEFAULT_SYNTHETIC_RATINGS) -> Path:
    """The built-in synthetic dataset used when `run` gets no --data (generated once)."""
    from pipelines.generate import generate_dataset

    out = project_dir / ".reelhouse" / "datasets" / f"synthetic-{num_ratings}"
    if not (out / "reelhouse_generator.json").exists():
        with progress.step(f"generating a synthetic dataset of {num_ratings:,} ratings in {out}"):
            generate_dataset(out, num_ratings, seed=42)
    return out


def record_run(spark, settings: Settings, row: dict) -> None:
    """One row per run in pipeline_runs, written whatever the outcome. The run id is the
    write's id: a run killed after recording itself but before releasing the lock is then not
    recorded a second time, as killed, by the run that takes the lock over."""
    df = naming.literal_rows(spark, RUNS_SCHEMA, [row])
    writes.append_once(spark, settings, df, "pipeline_runs", write_id=row["run_id"],
                        comment="Every pipeline run: when, how it ended, time and rows per step.")


def record_abandoned_run(spark, settings: Settings, holder: dict) -> None:
    """A run whose lock we took over was killed: say so in pipeline_runs (its id is the
    write's id: if it had recorded itself, or another run recorded it, nothing is added)."""
    started = holder.get("started_at")
    record_run(spark, settings, {
        "run_id": holder.get("run_id"), "status": "killed", "data_dir": None,
        "started_at": datetime.fromisoformat(started).replace(tzinfo=None) if started else None,
        "finished_at": None, "step_seconds": {}, "row_counts": {}, "models_rebuilt": [],
        "error_message": f"process {holder.get('pid')} on {holder.get('host')} ended without "
                         "finishing; each table it committed is whole, the next run did the "
                         "rest"})


def needs_training(spark, settings: Settings) -> bool:
    """Train unless the latest model run read exactly the input versions there are now. What
    this run rebuilt is not enough to go by: a run killed after its build committed new
    inputs, but before training, leaves the next run nothing to rebuild."""
    latest = model_runs.latest_run(spark, settings)
    if latest is None:
        return True
    return dict(latest.input_versions or {}) != model_runs.input_versions(spark, settings)


def run_pipeline(spark, settings: Settings, data_dir: str | Path, run_id: str,
                 cli_vars: dict | None = None, selectors: list[str] | None = None,
                 force: bool = False, steps: tuple[str, ...] = STEPS,
                 abandoned: list[dict] = ()) -> dict:
    """The steps in order (all by default); returns the pipeline_runs row written. Killed runs
    whose lock this run took over (`abandoned`, see lock.py) are recorded with it, at the end."""
    started_at = datetime.now(UTC).replace(tzinfo=None)
    row = {"run_id": run_id, "started_at": started_at, "status": "running",
           "data_dir": str(data_dir), "step_seconds": {}, "row_counts": {},
           "models_rebuilt": [], "error_message": None, "finished_at": None}

    def timed(step: str, work):
        clock = time.monotonic()
        # Spark jobs carry the step's name: the UI and event log show where the time goes.
        spark.sparkContext.setJobDescription(f"step {step}")
        try:
            with progress.step(step):
                result = work()
        finally:
            spark.sparkContext.setJobDescription(None)
        row["step_seconds"][step] = round(time.monotonic() - clock, 3)
        return result

    try:
        project = sql_project.load_project(settings, cli_vars=cli_vars)  # bad models fail first
        with all_or_nothing(spark, settings):
            if "ingest" in steps:
                lines = timed("ingest", lambda: ingest.ingest_dataset(spark, settings, data_dir))
                row["row_counts"].update({f"{kind}_lines_read": n for kind, n in lines.items()})
            if "build" in steps:
                row["models_rebuilt"] = timed(  # reports read train's output: evaluate builds them
                    "build", lambda: evaluate.build_warehouse_models(spark, project, selectors,
                                                                     force=force))
            if "train" in steps:
                if force or needs_training(spark, settings):
                    timed("train", lambda: train.train(spark, settings))
                else:
                    progress.say("train skipped: its inputs are unchanged since the last model "
                                 "run (--force retrains)")
            if "evaluate" in steps:
                timed("evaluate", lambda: evaluate.evaluate(spark, settings, cli_vars, force=force))
            if "report" in steps:  # writes target/report/report.html; changes no table
                timed("report", lambda: report.write_report(spark, settings,
                                                            only_if_changed=not force))
        row["status"] = "succeeded"
    except BaseException as exc:
        row["status"] = "failed"
        row["error_message"] = spark_message(exc, 1000)
        raise
    finally:
        row["finished_at"] = datetime.now(UTC).replace(tzinfo=None)
        for holder in abandoned:
            try:
                record_abandoned_run(spark, settings, holder)
            except Exception as exc:  # the run's own row and error still come next
                progress.say(f"could not record killed run {holder.get('run_id')} in "
                             f"pipeline_runs: {exc}")
        try:
            record_run(spark, settings, row)
        except Exception as exc:  # never hide the run's own error behind this one
            progress.say(f"could not record the run in pipeline_runs: {exc}")
    return row


def record_start_cache(settings: Settings, path: Path) -> None:
    """The JVM start cache (Java 25+, see jvm.start_cache_path): one whole run, on a small
    synthetic dataset in a scratch warehouse, in a JVM that writes the classes it loaded and
    how its methods ran to `path` as it exits. Every step's code runs, so every command that
    starts Spark (run, serve, spark-sql, sql...) finds most of what it loads in the cache."""
    import tempfile
    from dataclasses import replace

    from pipelines import jvm
    from pipelines.generate import generate_dataset
    from pipelines.session import create_spark

    path.parent.mkdir(parents=True, exist_ok=True)
    # Caches of other virtualenvs and Java builds: only the newest few are kept.
    jvm.prune_start_caches(path.parent, keep=jvm.START_CACHES_KEPT - 1)
    partial = path.with_name(f"{path.stem}.part{path.suffix}")  # renamed once complete
    with tempfile.TemporaryDirectory(prefix="reelhouse-start-cache-") as scratch:
        scratch_dir = Path(scratch)
        generate_dataset(scratch_dir / "data", 2_000, num_users=50, num_movies=150, seed=11)
        scratch_settings = replace(settings, warehouse=str(scratch_dir / "warehouse"),
                                   target_dir=scratch_dir / "target")
        spark = create_spark(scratch_settings, app_name="reelhouse-start-cache",
                             record_start_cache=partial)
        run_pipeline(spark, scratch_settings, scratch_dir / "data", run_ids.new_run_id())
        process = spark.sparkContext._gateway.proc
        spark.stop()
        process.stdin.close()  # the JVM exits when its stdin closes, writing the cache first
        process.wait(timeout=1800)
    if not partial.is_file():
        raise ReelhouseError(f"The JVM exited with {process.returncode} without writing {partial}.")
    partial.replace(path)


def write_summary(spark, settings: Settings, row: dict, path: Path) -> None:
    """`run --summary FILE`: the run's pipeline_runs row, the rows each table's last commit
    wrote (read from the Delta logs, no pass over the data) and the latest model run's RMSE
    and fit time, as one JSON document for schedulers and the bench."""
    summary = {key: value.isoformat() if isinstance(value, datetime) else value
               for key, value in row.items()}
    summary["table_rows"] = {table: delta_log.rows_in_last_commit(spark, settings, table)
                             for table in storage.list_tables_on_storage(spark, settings)}
    if registration.table_exists(spark, settings, "model_runs"):
        latest = spark.sql(f"""
            select run_id, rmse, mae, fit_seconds, train_rows, test_rows, recommended_users
            from {naming.qualified(settings, 'model_runs')}
            order by started_at desc limit 1""").first()  # one row
        summary["model"] = latest.asDict() if latest else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
