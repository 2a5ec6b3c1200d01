"""The table catalogue: where tables live, how they get names in a session, how they are written.

Every table is a Delta table at <warehouse>/<schema>/<table>. A session learns the tables by
listing that folder and registering each one by LOCATION (the Delta log is the source of truth,
so nothing else has to be kept in step). Views keep their SQL in <warehouse>/<schema>/_views.
All writes go through `replace_table` / `merge_into` / `append_once`: one Delta commit each, so a
reader sees the old version or the new one, never a partial table.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_identifier(name: str, what: str = "table name") -> str:
    """Names reach SQL only after this check (no quoting games with user input)."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ReelhouseError(
            f"{name!r} is not a valid {what}: use letters, digits and underscores only.")
    return name


def sql_string(value: str) -> str:
    """A SQL string literal: backslashes and quotes escaped, so the value stays a value."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified(settings: Settings, table: str) -> str:
    return f"{settings.schema}.{check_identifier(table)}"


# --- files on the warehouse's file system (local, s3a://, hdfs://, abfss:// alike) ---------

def _fs_path(spark, location: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(location)
    return path, path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_tables_on_storage(spark, settings: Settings) -> list[str]:
    """Names of the Delta tables under <warehouse>/<schema>, read from storage."""
    root, fs = _fs_path(spark, f"{settings.warehouse}/{settings.schema}")
    if not fs.exists(root):
        return []
    jvm = spark.sparkContext._jvm
    names = []
    for status in fs.listStatus(root):
        name = status.getPath().getName()
        if status.isDirectory() and IDENTIFIER.match(name):
            # A table exists once its first commit does: a writer creates _delta_log before it
            # commits version 0, and a name registered in between would fail to resolve.
            commits = fs.globStatus(jvm.org.apache.hadoop.fs.Path(status.getPath(),
                                                                  "_delta_log/0*"))
            if commits:
                names.append(name)
    return sorted(names)


def _read_file(spark, path) -> str:
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    stream = fs.open(path)
    try:
        data = spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def storage_listing(spark, settings: Settings) -> tuple[frozenset, frozenset]:
    """What a catalog refresh depends on, in two folder listings and no Spark job: the table
    folders, and each stored view file's name, size and time. While it is unchanged, a
    refresh has nothing to do (a table's new versions need none: it is registered by
    location). Folders are named as list_tables_on_storage names tables, and one whose first
    commit has not landed is listed too: the caller looks again until it is a table."""
    root, fs = _fs_path(spark, f"{settings.warehouse}/{settings.schema}")
    views, _ = _fs_path(spark, settings.views_location)
    folders = frozenset(name for status in (fs.listStatus(root) if fs.exists(root) else [])
                        if status.isDirectory()
                        and IDENTIFIER.match(name := status.getPath().getName()))
    files = frozenset((status.getPath().getName(), status.getLen(), status.getModificationTime())
                      for status in (fs.listStatus(views) if fs.exists(views) else []))
    return folders - {views.getName()}, files


def _read_text_files(spark, location: str) -> dict[str, str]:
    folder, fs = _fs_path(spark, location)
    if not fs.exists(folder):
        return {}
    return {status.getPath().getName()[:-4]: _read_file(spark, status.getPath())
            for status in fs.listStatus(folder) if status.getPath().getName().endswith(".sql")}


def _write_text_file(spark, location: str, text: str) -> None:
    path, fs = _fs_path(spark, location)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def delete_path(spark, location: str) -> None:
    path, fs = _fs_path(spark, location)
    if fs.exists(path):
        fs.delete(path, True)


# --- registering names ---------------------------------------------------------------------

def table_statement(settings: Settings, table: str) -> str:
    return (f"create table if not exists {settings.schema}.{check_identifier(table)} "
            f"using delta location {sql_string(settings.table_location(table))}")


# A view's property: a hash of the SQL and tested fingerprint it was created from, so a catalog
# refresh re-creates only the views that changed (re-creating plans the query: the Thrift server
# refreshing every second spent most of a core re-creating unchanged views).
VIEW_SOURCE = "reelhouse.view_source"


def view_source(select_sql: str, fingerprint: str | None) -> str:
    """The build writes a new fingerprint whenever it re-creates a view (its inputs changed),
    so a server re-creates it too and picks up a changed schema underneath."""
    return hashlib.sha256(f"{select_sql}\n{fingerprint}".encode()).hexdigest()[:32]


def view_statement(settings: Settings, view: str, select_sql: str,
                   source: str | None = None) -> str:
    properties = f"tblproperties ({sql_string(VIEW_SOURCE)} = {sql_string(source)}) " \
        if source else ""
    return (f"create or replace view {settings.schema}.{check_identifier(view)} {properties}"
            f"as {select_sql}")


def _view_property(spark, settings: Settings, view: str) -> str | None:
    rows = spark.sql(f"show tblproperties {settings.schema}.{check_identifier(view)} "
                     f"({sql_string(VIEW_SOURCE)})").collect()
    return rows[0].value if rows and rows[0].key == VIEW_SOURCE else None


def register_warehouse(spark, settings: Settings) -> list[str]:
    """Give every table on storage its name in this session, and forget names whose table is
    gone (idempotent: the Thrift server calls it again and again to pick up what a pipeline run
    created or dropped). Returns the table names."""
    schema = settings.schema
    spark.sql(f"create schema if not exists {schema}")
    known = {row.tableName for row in spark.sql(f"show tables in {schema}").collect()
             if not row.isTemporary}
    tables = list_tables_on_storage(spark, settings)
    for table in tables:
        if table not in known:
            spark.sql(table_statement(settings, table))
    views = stored_views(spark, settings)
    for gone in known - set(tables) - set(views):
        try:  # external tables: this drops the catalog entry only, never data
            spark.sql(f"drop table if exists {schema}.{gone}")
        except Exception:  # it was a view whose SQL file is gone
            spark.sql(f"drop view if exists {schema}.{gone}")
    for name in view_order(settings, views):
        source = view_source(views[name], view_fingerprint(spark, settings, name))
        if name in known and _view_property(spark, settings, name) == source:
            continue  # this session created it from the same SQL and inputs
        try:
            spark.sql(view_statement(settings, name, views[name], source))
        except Exception as exc:  # e.g. a table it reads is gone: the rest stays usable
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc
            print(f"reelhouse: view {schema}.{name} skipped: {first_line}", file=sys.stderr)
    return tables


def stored_views(spark, settings: Settings) -> dict[str, str]:
    return {name: sql for name, sql in _read_text_files(spark, settings.views_location).items()
            if IDENTIFIER.match(name)}


def put_back_views(spark, settings: Settings, views: dict[str, str]) -> None:
    """Make the stored view definitions exactly `views` again (after a failed run)."""
    for name in set(stored_views(spark, settings)) - set(views):
        delete_path(spark, f"{settings.views_location}/{name}.sql")
        delete_path(spark, f"{settings.views_location}/{name}.fingerprint")
        spark.sql(f"drop view if exists {settings.schema}.{name}")
    for name, sql in views.items():
        _write_text_file(spark, f"{settings.views_location}/{name}.sql", sql)
        # not tested in this state: the next build tests it again
        delete_path(spark, f"{settings.views_location}/{name}.fingerprint")


def view_order(settings: Settings, views: dict[str, str]) -> list[str]:
    """Views after the views they select from, so each CREATE VIEW finds its inputs."""
    ordered: list[str] = []

    def place(name: str, seen: tuple[str, ...] = ()) -> None:
        if name in ordered or name in seen:
            return
        for other in views:
            if other != name and re.search(rf"\b{settings.schema}\.{other}\b", views[name]):
                place(other, seen + (name,))
        ordered.append(name)

    for name in sorted(views):
        place(name)
    return ordered


def registration_script(settings: Settings, tables: list[str], views: dict[str, str]) -> str:
    """The same registration as SQL text, for shells that run no Python (`spark-sql -i`).
    Functions come before views, which may call them."""
    statements = [f"create schema if not exists {settings.schema}"]
    statements += [table_statement(settings, t) for t in tables]
    statements += udf_statements(settings)
    statements += [view_statement(settings, name, views[name])
                   for name in view_order(settings, views)]
    return ";\n".join(statements) + ";\n"


def table_exists(spark, settings: Settings, table: str) -> bool:
    return spark.catalog.tableExists(qualified(settings, table))


def current_version(spark, settings: Settings, table: str) -> int | None:
    """The table's latest Delta version, or None when it does not exist yet (or is a view)."""
    return delta_version(spark, settings.table_location(check_identifier(table)))


_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")


def _commit_files(spark, location: str) -> list[tuple[int, object]]:
    """A Delta table's commit files (NNN.json) as (version, path), oldest first; [] when there
    is no table. A listing: no Spark job."""
    log, fs = _fs_path(spark, f"{location}/_delta_log")
    if not fs.exists(log):
        return []
    return sorted((int(match.group(1)), status.getPath()) for status in fs.listStatus(log)
                  if (match := _COMMIT_FILE.match(status.getPath().getName())))


def _latest_commit_file(spark, location: str):
    """The newest commit file in a Delta table's log, or None. Every commit writes one
    NNN.json and log cleanup only removes old ones, so the newest names the table's version:
    a listing, where DESCRIBE HISTORY costs a Spark job."""
    commits = _commit_files(spark, location)
    return commits[-1] if commits else None


def delta_version(spark, location: str) -> int | None:
    """Latest version of the Delta table stored at location (None: no Delta table there)."""
    newest = _latest_commit_file(spark, location)
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
    properties = _properties_from_log(spark, settings.table_location(check_identifier(table)))
    if properties is not None:
        return properties.get(key)
    from delta.tables import DeltaTable

    try:  # the metadata is only in a checkpoint: DESCRIBE DETAIL (Spark jobs)
        detail = DeltaTable.forName(spark, qualified(settings, table)).detail().first()
    except Exception:
        return None
    return (detail["properties"] or {}).get(key)


def _properties_from_log(spark, location: str) -> dict[str, str] | None:
    """The table's properties from the newest metaData action in its commit files, read
    newest first: every replace and property change writes one, so it is almost always in
    the newest file or two. DESCRIBE DETAIL would cost two Spark jobs per model build. {} when
    there is no table; None when the commit files that remain hold no metaData (older ones
    were cleaned up after a checkpoint)."""
    commits = _commit_files(spark, location)
    if not commits:
        return {}
    expected = commits[-1][0]
    for version, path in reversed(commits):
        if version != expected:
            return None  # a gap: the metadata may be in a file that is gone
        for line in _read_file(spark, path).splitlines():
            if line.startswith('{"metaData"'):
                return json.loads(line)["metaData"].get("configuration") or {}
        expected -= 1
    return None


def set_table_property(spark, settings: Settings, table: str, key: str, value: str) -> None:
    spark.sql(f"alter table {qualified(settings, table)} set tblproperties "
              f"({sql_string(key)} = {sql_string(value)})")


def last_commit_info(spark, settings: Settings, table: str) -> dict:
    """The commitInfo of the table's newest commit (operation, operationMetrics, ...), read
    from its log file: no Spark job. Empty when there is no table."""
    newest = _latest_commit_file(spark, settings.table_location(check_identifier(table)))
    if newest is None:
        return {}
    for line in _read_file(spark, newest[1]).splitlines():
        if '"commitInfo"' in line:
            return json.loads(line).get("commitInfo", {})
    return {}


def rows_in_last_commit(spark, settings: Settings, table: str) -> int | None:
    """Rows the table's last commit wrote, read from the Delta log (no pass over the data)."""
    metrics = last_commit_info(spark, settings, table).get("operationMetrics") or {}
    for key in ("numOutputRows", "numTargetRowsInserted"):
        if key in metrics:
            return int(metrics[key])
    return None


def restore(spark, settings: Settings, table: str, version: int | None) -> None:
    """Put a table back to a version (None: the table did not exist, so drop it again)."""
    name = qualified(settings, table)
    if version is None:
        spark.sql(f"drop table if exists {name}")
        delete_path(spark, settings.table_location(table))
    elif current_version(spark, settings, table) != version:
        spark.sql(f"restore table {name} to version as of {int(version)}")


def restore_all(spark, settings: Settings, versions: dict[str, int | None]) -> dict[str, str]:
    """Put each table back to its version, side by side: a RESTORE is a few small Spark jobs
    and a commit, mostly waiting, so threads overlap them (five train outputs took 44 s one
    after another). Every table is attempted; returns {table: error} for those that failed."""
    if not versions:
        return {}
    failures = {}
    with ThreadPoolExecutor(max_workers=min(len(versions), max(1, settings.threads)),
                            thread_name_prefix="reelhouse-restore") as pool:
        futures = {table: pool.submit(restore, spark, settings, table, version)
                   for table, version in versions.items()}
        for table, future in futures.items():
            try:
                future.result()
            except Exception as exc:  # the caller says which failed; the others are restored
                failures[table] = spark_message(exc)
    return failures


# --- rows from Python ----------------------------------------------------------------------

def literal_rows(spark, columns: str | list[tuple[str, str]], rows: list[tuple | dict]):
    """A few rows of Python values as a DataFrame, built in SQL: createDataFrame would start
    Python workers (seconds of CPU in a fresh process) just to unpickle them. columns: a DDL
    schema ("a int, b map<string, double>") or (name, type) pairs; a row is a tuple in column
    order or a dict by column name. Naive datetimes are local time, as createDataFrame reads
    them."""
    if isinstance(columns, str):
        from pyspark.sql.types import StructType

        columns = [(f.name, f.dataType.simpleString()) for f in StructType.fromDDL(columns)]
    names = [name for name, _ in columns]
    tuples = [tuple(row[n] for n in names) if isinstance(row, dict) else row for row in rows]
    aliases = ", ".join(f"c{i}" for i in range(len(columns)))
    select = ", ".join(f"cast(c{i} as {kind}) as {check_identifier(name, 'column name')}"
                       for i, (name, kind) in enumerate(columns))
    if not tuples:  # VALUES needs a row: one of nulls, filtered out
        return spark.sql(f"select {select} from values ({', '.join(['null'] * len(columns))}) "
                         f"as t({aliases}) where false")
    values = ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in tuples)
    return spark.sql(f"select {select} from values {values} as t({aliases})")


def sql_literal(value) -> str:
    """A Python value as a Spark SQL literal (None, bool, int, float, datetime, str, and
    lists and dicts of them)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return f"cast({sql_string(repr(value))} as double)"  # nan and inf included
    if isinstance(value, datetime):
        micros = round(value.timestamp() * 1_000_000)
        return f"timestamp_micros({micros}L)"
    if isinstance(value, list | tuple):
        return "array(" + ", ".join(sql_literal(v) for v in value) + ")"
    if isinstance(value, dict):
        return "map(" + ", ".join(f"{sql_literal(k)}, {sql_literal(v)}"
                                  for k, v in value.items()) + ")"
    return sql_string(str(value))


# --- writing -------------------------------------------------------------------------------

def with_comments(df, column_comments: dict[str, str] | None):
    """Column descriptions ride in the schema's metadata, which Delta stores as column comments."""
    for column, comment in (column_comments or {}).items():
        if column in df.columns and comment:
            df = df.withMetadata(column, {**df.schema[column].metadata, "comment": comment})
    return df


def replace_table(spark, settings: Settings, df, table: str, comment: str | None = None,
                  column_comments: dict[str, str] | None = None,
                  partition_by: list[str] | None = None,
                  properties: dict[str, str] | None = None) -> None:
    """CREATE OR REPLACE TABLE … AS SELECT: one atomic Delta commit (readers see old or new)."""
    name = qualified(settings, table)
    source_view = f"__reelhouse_source_{table}"
    with_comments(df, column_comments).createOrReplaceTempView(source_view)
    partition_clause = ""
    if partition_by:
        partition_clause = "partitioned by (" + ", ".join(
            check_identifier(c, "column name") for c in partition_by) + ")"
    comment_clause = f"comment {sql_string(comment)}" if comment else ""
    properties_clause = ""
    if properties:
        properties_clause = "tblproperties (" + ", ".join(
            f"{sql_string(k)} = {sql_string(v)}" for k, v in properties.items()) + ")"
    try:
        spark.sql(
            f"create or replace table {name} using delta {partition_clause} {comment_clause} "
            f"{properties_clause} "
            f"location {sql_string(settings.table_location(table))} "
            f"as select * from {source_view}")
    finally:
        spark.catalog.dropTempView(source_view)
    delete_path(spark, f"{settings.views_location}/{table}.sql")


def append_once(spark, settings: Settings, df, table: str, write_id: str,
                comment: str | None = None,
                column_comments: dict[str, str] | None = None) -> None:
    """Append df in one commit that Delta applies at most once per write_id (an idempotent
    write: the commit carries write_id as its transaction id, and a later append with the same
    id is skipped), so two processes recording the same event cannot write it twice. An append
    is a third of a MERGE's time: no join with the table's rows. The first call creates the
    table, empty, so that every row arrives through an idempotent append."""
    if not table_exists(spark, settings, table):
        replace_table(spark, settings, df.limit(0), table, comment, column_comments)
    (df.write.format("delta").mode("append").option("mergeSchema", "true")  # new columns
        .option("txnAppId", write_id).option("txnVersion", 1)
        .save(settings.table_location(table)))


def merge_into(spark, settings: Settings, df, table: str, unique_key: list[str],
               comment: str | None = None, column_comments: dict[str, str] | None = None,
               only_changed: bool = False, delete_missing: bool = False) -> None:
    """MERGE on unique_key (update matches, insert the rest): one atomic Delta commit.
    The first run creates the table.

    only_changed: a matched row is updated only when one of its other columns differs
    (null-safe), so an unchanged row is not rewritten. delete_missing: df is the whole table,
    and target rows whose key it no longer has are deleted (WHEN NOT MATCHED BY SOURCE)."""
    if not table_exists(spark, settings, table):
        replace_table(spark, settings, df, table, comment, column_comments)
        return
    keys = [check_identifier(k, "column name") for k in unique_key]
    source_view = f"__reelhouse_source_{table}"
    df.createOrReplaceTempView(source_view)
    condition = " and ".join(f"target.{k} <=> source.{k}" for k in keys)
    clauses = ["when matched then update set *"]
    if only_changed:
        lowered = {k.lower() for k in keys}
        same = [_same_value(field) for field in df.schema if field.name.lower() not in lowered]
        # Only keys: a matched row cannot differ, so there is nothing to update.
        clauses = [f"when matched and not ({' and '.join(same)}) then update set *"] if same else []
    clauses.append("when not matched then insert *")
    if delete_missing:
        clauses.append("when not matched by source then delete")
    try:
        spark.sql(
            f"merge into {qualified(settings, table)} as target using {source_view} as source "
            f"on {condition} {' '.join(clauses)}")
    finally:
        spark.catalog.dropTempView(source_view)


def _same_value(field) -> str:
    """target.c <=> source.c; maps have no equality in Spark SQL, so they compare as JSON."""
    column = "`" + field.name.replace("`", "``") + "`"
    if "map<" in field.dataType.simpleString():
        return f"to_json(target.{column}) <=> to_json(source.{column})"
    return f"target.{column} <=> source.{column}"


def update_metadata(spark, settings: Settings, table: str, comment: str | None = None,
                    column_comments: dict[str, str] | None = None,
                    properties: dict[str, str] | None = None) -> None:
    """Give a table this comment, these column comments and properties, writing only what
    differs: after a MERGE, which cannot set them in its own commit. The table comment rides
    in the properties' commit (Delta keeps 'comment' as the table's description)."""
    name = qualified(settings, table)
    changes = dict(properties or {})
    if comment and spark.catalog.getTable(name).description != comment:
        changes["comment"] = comment
    if changes:
        spark.sql(f"alter table {name} set tblproperties (" + ", ".join(
            f"{sql_string(k)} = {sql_string(v)}" for k, v in changes.items()) + ")")
    schema = spark.table(name).schema
    for column, text in (column_comments or {}).items():
        if text and column in schema.names and schema[column].metadata.get("comment") != text:
            spark.sql(f"alter table {name} alter column {check_identifier(column, 'column name')} "
                      f"comment {sql_string(text)}")


def create_view(spark, settings: Settings, view: str, select_sql: str,
                comment: str | None = None) -> None:
    """A view, plus its SQL kept on storage so other sessions can recreate it by name."""
    name = qualified(settings, view)
    comment_clause = f"comment {sql_string(comment)}" if comment else ""
    log, fs = _fs_path(spark, f"{settings.table_location(view)}/_delta_log")
    if fs.exists(log):
        raise ReelhouseError(
            f"{name} is a table: drop it before building it as a view.")
    # No fingerprint until the view's tests pass (set_view_fingerprint): a run killed before
    # then tests the view again.
    delete_path(spark, f"{settings.views_location}/{view}.fingerprint")
    spark.sql(f"create or replace view {name} {comment_clause} as {select_sql}")
    _write_text_file(spark, f"{settings.views_location}/{view}.sql", select_sql)


def view_fingerprint(spark, settings: Settings, view: str) -> str | None:
    """What the view was last built and tested from (runner.fingerprint), or None."""
    path, fs = _fs_path(spark, f"{settings.views_location}/{view}.fingerprint")
    return _read_file(spark, path) if fs.exists(path) else None


def set_view_fingerprint(spark, settings: Settings, view: str, value: str) -> None:
    _write_text_file(spark, f"{settings.views_location}/{view}.fingerprint", value)


# --- functions -----------------------------------------------------------------------------

def udf_statements(settings: Settings) -> list[str]:
    """The CREATE FUNCTION statements in udfs/*.sql, one per `;`-terminated statement."""
    statements = []
    for path in sorted(settings.udfs_dir.glob("*.sql")):
        text = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("--"))
        statements += [s.strip() for s in re.split(r";\s*(?:\n|$)", text) if s.strip()]
    return statements


def register_udfs(spark, settings: Settings) -> None:
    """SQL functions from udfs/, persistent in this JVM's catalog so every session (each JDBC
    connection to the Thrift server too) can call them as movielens.<name>."""
    spark.sql(f"create schema if not exists {settings.schema}")
    for statement in udf_statements(settings):
        spark.sql(statement)
