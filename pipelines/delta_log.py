"""Reading a Delta table's log directly: its version, properties and last commit, from a
listing and a JSON file, where DESCRIBE HISTORY / DETAIL would cost Spark jobs."""

from __future__ import annotations

import json
import re

from pipelines import naming, storage
from pipelines.settings import Settings


def current_version(spark, settings: Settings, table: str) -> int | None:
    """The table's latest Delta version, or None when it does not exist yet (or is a view)."""
    return delta_version(spark, settings.table_location(naming.check_identifier(table)))


_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def commit_files(spark, location: str) -> list[tuple[int, object]]:
    """A Delta table's commit files (NNN.json) as (version, path), oldest first; [] when there
    is no table. A listing: no Spark job."""
    log, fs = storage.fs_path(spark, f"{location}/_delta_log")
    if not fs.exists(log):
        return []
    return sorted((int(match.group(1)), status.getPath()) for status in fs.listStatus(log)
                  if (match := _COMMIT_FILE.match(status.getPath().getName())))


def latest_commit_file(spark, location: str):
    """The newest commit file in a Delta table's log, or None. Every commit writes one
    NNN.json and log cleanup only removes old ones, so the newest names the table's version:
    a listing, where DESCRIBE HISTORY costs a Spark job."""
    commits = commit_files(spark, location)
    return commits[-1] if commits else None


def delta_version(spark, location: str) -> int | None:
    """Latest version of the Delta table stored at location (None: no Delta table there)."""
    newest = latest_commit_file(spark, location)
    return None if newest is None else newest[0]


def version_of(spark, qualified_name: str) -> int | None:
    """Latest Delta version of a table given as schema.table (None: absent or not Delta)."""
    from delta.tables import DeltaTable

    try:
        return DeltaTable.forName(spark, qualified_name).history(1).select("version").first()[0]
    except Exception:
        return None


def table_property(spark, settings: Settings, table: str, key: str) -> str | None:
    """One of the table's properties (TBLPROPERTIES), or None when it has no such property
    or there is no table."""
    location = settings.table_location(naming.check_identifier(table))
    properties = _properties_from_log(spark, location)
    if properties is not None:
        return properties.get(key)
    from delta.tables import DeltaTable

    try:  # the metadata is only in a checkpoint: DESCRIBE DETAIL (Spark jobs)
        detail = DeltaTable.forName(spark, naming.qualified(settings, table)).detail().first()
    except Exception:
        return None
    return (detail["properties"] or {}).get(key)


def _properties_from_log(spark, location: str) -> dict[str, str] | None:
    """The table's properties from the newest metaData action in its commit files, read
    newest first: every replace and property change writes one, so it is almost always in
    the newest file or two. DESCRIBE DETAIL would cost two Spark jobs per model build. {} when
    there is no table; None when the commit files that remain hold no metaData (older ones
    were cleaned up after a checkpoint)."""
    commits = commit_files(spark, location)
    if not commits:
        return {}
    expected = commits[-1][0]
    for version, path in reversed(commits):
        if version != expected:
            return None  # a gap: the metadata may be in a file that is gone
        for line in storage.read_file(spark, path).splitlines():
            if line.startswith('{"metaData"'):
                return json.loads(line)["metaData"].get("configuration") or {}
        expected -= 1
    return None


def last_commit_info(spark, settings: Settings, table: str) -> dict:
    """The commitInfo of the table's newest commit (operation, operationMetrics, ...), read
    from its log file: no Spark job. Empty when there is no table."""
    newest = latest_commit_file(spark, settings.table_location(naming.check_identifier(table)))
    if newest is None:
        return {}
    for line in storage.read_file(spark, newest[1]).splitlines():
        if '"commitInfo"' in line:
            return json.loads(line).get("commitInfo", {})
    return {}


def size_in_bytes(spark, settings: Settings, table: str) -> int | None:
    """The bytes of data files in the table's current version, from the checksum file Delta
    writes beside each commit (NNN.crc): no Spark job. None when there is no table or no
    checksum for its newest version."""
    location = settings.table_location(naming.check_identifier(table))
    newest = latest_commit_file(spark, location)
    if newest is None:
        return None
    path, fs = storage.fs_path(spark, f"{location}/_delta_log/{newest[0]:020d}.crc")
    if not fs.exists(path):
        return None
    return json.loads(storage.read_file(spark, path)).get("tableSizeBytes")


def rows_in_last_commit(spark, settings: Settings, table: str) -> int | None:
    """Rows the table's last commit wrote, read from the Delta log (no pass over the data)."""
    metrics = last_commit_info(spark, settings, table).get("operationMetrics") or {}
    for key in ("numOutputRows", "numTargetRowsInserted"):
        if key in metrics:
            return int(metrics[key])
    return None
