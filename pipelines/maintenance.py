"""Recovery and upkeep on Delta's own tools: history, RESTORE, OPTIMIZE and VACUUM."""

from __future__ import annotations

from pipelines import delta_log, naming, progress, storage
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

DELTA_DEFAULT_RETENTION_HOURS = 168.0


def _existing(spark, settings: Settings, table: str) -> str:
    name = naming.qualified(settings, table)  # rejects anything but a plain identifier
    if delta_log.current_version(spark, settings, table) is None:
        known = ", ".join(storage.list_tables_on_storage(spark, settings)) or "none yet"
        raise ReelhouseError(f"{name} is not a Delta table in this warehouse (tables: {known}).")
    return name


def history(spark, settings: Settings, table: str, limit: int = 20):
    name = _existing(spark, settings, table)
    return spark.sql(f"describe history {name} limit {int(limit)}").select(
        "version", "timestamp", "operation", "operationParameters", "operationMetrics")


def restore_version(spark, settings: Settings, table: str, version: int) -> None:
    name = _existing(spark, settings, table)
    latest = delta_log.current_version(spark, settings, table)
    if not 0 <= version <= latest:
        raise ReelhouseError(f"{name} has versions 0 to {latest}; {version} is not one of them.")
    try:
        spark.sql(f"restore table {name} to version as of {int(version)}")
    except Exception as exc:
        raise ReelhouseError(
            f"{name} cannot go back to version {version} ({spark_message(exc, 160)}): "
            "its files may have been vacuumed.") from exc
    progress.say(f"{name} restored to version {version} (as new version {latest + 1})")


def maintain(spark, settings: Settings, retain_hours: float = DELTA_DEFAULT_RETENTION_HOURS,
             unsafe_retention: bool = False) -> None:
    if retain_hours < DELTA_DEFAULT_RETENTION_HOURS and not unsafe_retention:
        raise ReelhouseError(
            f"--retain-hours {retain_hours:g} is below Delta's safe default of 168 hours: "
            "readers of older versions and time travel could break; add --unsafe-retention "
            "if you mean it.")
    if unsafe_retention:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    for table in storage.list_tables_on_storage(spark, settings):
        name = naming.qualified(settings, table)
        with progress.step(f"maintain {name}") as info:
            optimized = spark.sql(f"optimize {name}").first()
            spark.sql(f"vacuum {name} retain {float(retain_hours)} hours")
            metrics = optimized["metrics"] if optimized is not None else None
            if metrics is not None:
                info["result"] = (f"{metrics['numFilesRemoved']} files compacted into "
                                  f"{metrics['numFilesAdded']}")
