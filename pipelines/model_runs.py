"""Training runs as the warehouse records them: the inputs a run reads at fixed Delta
versions, the tables it writes, its row in model_runs (written last: a run is finished once
it is there), putting the tables back when a run fails or was killed, and its checkpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from pipelines import delta_log, naming, progress, registration, sql_project, storage, writes
from pipelines.errors import ReelhouseError
from pipelines.settings import Settings

INPUT_TABLES = ("ratings_split", "ratings")
OUTPUT_TABLES = ("user_factors", "movie_factors", "rating_user_factors", "rating_movie_factors",
                 "predictions", "test_recommendations", "candidate_recommendations",
                 "recommendations", "similar_movies")
RUNS_TABLE = "model_runs"


def input_versions(spark, settings: Settings) -> dict[str, int]:
    """The Delta version of each input table now, read from the log listings (no Spark job);
    training reads exactly these versions."""
    versions = {}
    for table in INPUT_TABLES:
        version = delta_log.current_version(spark, settings, table)
        if version is None:
            raise ReelhouseError(f"{naming.qualified(settings, table)} does not exist: run "
                                 "`reelhouse run` (or `reelhouse build`) before training.")
        versions[table] = version
    return versions


def read_input(spark, settings: Settings, table: str, versions: dict[str, int]):
    """An input table at the version `versions` names (see input_versions)."""
    return spark.sql(f"select * from {naming.qualified(settings, table)} "
                     f"version as of {int(versions[table])}")


RUN_COLUMNS = [
    ("run_id", "string"), ("started_at", "timestamp"), ("finished_at", "timestamp"),
    ("params", "string"), ("global_mean", "double"), ("rating_scale_min", "double"),
    ("rating_scale_max", "double"), ("train_rows", "bigint"), ("test_rows", "bigint"),
    ("prediction_rows", "bigint"), ("cold_start_rows", "bigint"),
    ("recommended_users", "bigint"), ("fit_seconds", "double"), ("total_seconds", "double"),
    ("rmse", "double"), ("mae", "double"), ("input_versions", "map<string, bigint>"),
    ("output_versions", "map<string, bigint>"), ("model_path", "string"),
    ("list_model", "string"), ("list_params", "string"), ("serving_global_mean", "double"),
    ("serving_rows", "bigint"), ("serving_fit_seconds", "double"), ("list_choice", "string"),
]
def latest_run(spark, settings: Settings):
    """The newest model_runs row, or None before the first run."""
    if delta_log.current_version(spark, settings, RUNS_TABLE) is None:
        return None
    return (spark.table(naming.qualified(settings, RUNS_TABLE))
            .orderBy("finished_at", "run_id", ascending=False).first())


def recover_interrupted(spark, settings: Settings) -> dict[str, int | None]:
    """An output table holding rows of a run that is not the latest in model_runs was written
    by a run that never finished (killed before it could restore it): put it back to the
    version the latest model_runs row names (or drop it if no run ever finished). Returns
    each output table's version afterwards (None: absent)."""
    registration.register_warehouse(spark, settings)
    last = latest_run(spark, settings)
    expected = dict(last.output_versions or {}) if last is not None else {}
    versions = {table: delta_log.current_version(spark, settings, table) for table in OUTPUT_TABLES}
    moved = [table for table, version in versions.items()
             if version is not None and version != expected.get(table)]
    fixed = moved
    if last is not None and moved:  # a restored table is moved but holds the last run's rows
        with ThreadPoolExecutor(max_workers=len(moved)) as pool:  # one-row reads, overlapped
            writers = list(pool.map(lambda t: _written_by(spark, settings, t), moved))
        fixed = [t for t, writer in zip(moved, writers, strict=True) if writer != last.run_id]
    failures = writes.restore_all(spark, settings, {t: expected.get(t) for t in fixed})
    if failures:
        raise ReelhouseError("Could not put back the output tables of an unfinished train: " +
                             "; ".join(f"{t}: {e}" for t, e in failures.items()))
    versions.update({table: delta_log.current_version(spark, settings, table) for table in fixed})
    if fixed:
        progress.say(f"an earlier train did not finish: put {', '.join(fixed)} back as the "
                     f"last finished run ({last.run_id if last else 'none'}) left them")
    return versions


def _written_by(spark, settings: Settings, table: str) -> str | None:
    """The run whose rows a table holds (one row read; None when it is empty). A restored
    table has a new Delta version but the old run's rows, so the run_id is what tells."""
    row = spark.sql(f"select run_id from {naming.qualified(settings, table)} limit 1").first()
    return row.run_id if row is not None else None


def rollback(spark, settings: Settings, before: dict[str, int | None], model_path: str):
    """A failed run: every output table back to its version `before` it, its models deleted."""
    progress.say("train failed: putting the output tables back to their versions before it")
    for table, error in writes.restore_all(spark, settings, before).items():
        # the others are restored; the next train repairs this one (recover_interrupted)
        progress.say(f"could not restore {table} to version {before[table]}: {error}")
    try:
        storage.delete_path(spark, model_path)
    except Exception as exc:  # a leftover model folder is harmless; say so
        progress.say(f"could not delete {model_path}: {exc}")


@contextmanager
def run_checkpoints(spark, settings: Settings, run_id: str):
    """ALS's checkpoints for one run in a folder of their own, deleted when the run ends
    (ALS deletes all but its last checkpoint itself; this removes the last)."""
    folder = f"{settings.checkpoint_location}/{run_id}"
    spark.sparkContext.setCheckpointDir(folder)
    try:
        yield
    finally:
        try:
            storage.delete_path(spark, folder)
        except Exception as exc:  # leftover checkpoints waste space but harm nothing
            progress.say(f"could not delete the checkpoints in {folder}: {exc}")


def record_run(spark, settings: Settings, row: tuple) -> None:
    """A run's model_runs row (RUN_COLUMNS, in order), written last: a run is finished once
    this row is written, and not before (an append: a third of a MERGE's time, and a new
    run_id cannot match a row anyway)."""
    writes.append_once(spark, settings, naming.literal_rows(spark, RUN_COLUMNS, [row]),
                        RUNS_TABLE, row[0], *sql_project.table_docs(settings, RUNS_TABLE))

