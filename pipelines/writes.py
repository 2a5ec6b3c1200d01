"""Every write to the warehouse: replace, append once, merge, metadata, views, restore.

Each is one Delta commit, so a reader sees the old version or the new one, never a partial
table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipelines import delta_log, naming, registration, storage
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings


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
    name = naming.qualified(settings, table)
    source_view = f"__reelhouse_source_{table}"
    with_comments(df, column_comments).createOrReplaceTempView(source_view)
    partition_clause = ""
    if partition_by:
        partition_clause = "partitioned by (" + ", ".join(
            naming.check_identifier(c, "column name") for c in partition_by) + ")"
    comment_clause = f"comment {naming.sql_string(comment)}" if comment else ""
    properties_clause = ""
    if properties:
        properties_clause = "tblproperties (" + ", ".join(
            f"{naming.sql_string(k)} = {naming.sql_string(v)}" for k, v in properties.items()) + ")"
    try:
        spark.sql(
            f"create or replace table {name} using delta {partition_clause} {comment_clause} "
            f"{properties_clause} "
            f"location {naming.sql_string(settings.table_location(table))} "
            f"as select * from {source_view}")
    finally:
        spark.catalog.dropTempView(source_view)
    storage.delete_path(spark, f"{settings.views_location}/{table}.sql")


def append_once(spark, settings: Settings, df, table: str, write_id: str,
                comment: str | None = None,
                column_comments: dict[str, str] | None = None) -> None:
    """Append df in one commit that Delta applies at most once per write_id (an idempotent
    write: the commit carries write_id as its transaction id, and a later append with the same
    id is skipped), so two processes recording the same event cannot write it twice. An append
    is a third of a MERGE's time: no join with the table's rows. The first call creates the
    table, empty, so that every row arrives through an idempotent append."""
    if not registration.table_exists(spark, settings, table):
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
    if not registration.table_exists(spark, settings, table):
        replace_table(spark, settings, df, table, comment, column_comments)
        return
    keys = [naming.check_identifier(k, "column name") for k in unique_key]
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
            f"merge into {naming.qualified(settings, table)} as target "
            f"using {source_view} as source "
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
    name = naming.qualified(settings, table)
    changes = dict(properties or {})
    if comment and spark.catalog.getTable(name).description != comment:
        changes["comment"] = comment
    if changes:
        spark.sql(f"alter table {name} set tblproperties (" + ", ".join(
            f"{naming.sql_string(k)} = {naming.sql_string(v)}" for k, v in changes.items()) + ")")
    schema = spark.table(name).schema
    for column, text in (column_comments or {}).items():
        if text and column in schema.names and schema[column].metadata.get("comment") != text:
            column = naming.check_identifier(column, 'column name')
            spark.sql(f"alter table {name} alter column {column} "
                      f"comment {naming.sql_string(text)}")


def create_view(spark, settings: Settings, view: str, select_sql: str,
                comment: str | None = None) -> None:
    """A view, plus its SQL kept on storage so other sessions can recreate it by name."""
    name = naming.qualified(settings, view)
    comment_clause = f"comment {naming.sql_string(comment)}" if comment else ""
    log, fs = storage.fs_path(spark, f"{settings.table_location(view)}/_delta_log")
    if fs.exists(log):
        raise ReelhouseError(
            f"{name} is a table: drop it before building it as a view.")
    # No fingerprint until the view's tests pass (set_view_fingerprint): a run killed before
    # then tests the view again.
    storage.delete_path(spark, f"{settings.views_location}/{view}.fingerprint")
    spark.sql(f"create or replace view {name} {comment_clause} as {select_sql}")
    storage.write_text_file(spark, f"{settings.views_location}/{view}.sql", select_sql)


def restore(spark, settings: Settings, table: str, version: int | None) -> None:
    """Put a table back to a version (None: the table did not exist, so drop it again)."""
    name = naming.qualified(settings, table)
    if version is None:
        spark.sql(f"drop table if exists {name}")
        storage.delete_path(spark, settings.table_location(table))
    elif delta_log.current_version(spark, settings, table) != version:
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
