"""Giving the warehouse's tables, views and SQL functions their names in a session.

Every table is a Delta table at <warehouse>/<schema>/<table>. A session learns the tables by
listing that folder and registering each one by LOCATION (the Delta log is the source of truth,
so nothing else has to be kept in step). Views keep their SQL in <warehouse>/<schema>/_views;
SQL functions come from the project's udfs/ folder.
"""

from __future__ import annotations

import hashlib
import re
import sys

from pipelines import naming, storage
from pipelines.errors import spark_message
from pipelines.settings import Settings


def table_statement(settings: Settings, table: str) -> str:
    return (f"create table if not exists {settings.schema}.{naming.check_identifier(table)} "
            f"using delta location {naming.sql_string(settings.table_location(table))}")


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
    properties = ""
    if source:
        properties = (f"tblproperties ({naming.sql_string(VIEW_SOURCE)} = "
                      f"{naming.sql_string(source)}) ")
    return (f"create or replace view {settings.schema}.{naming.check_identifier(view)} {properties}"
            f"as {select_sql}")


def _view_property(spark, settings: Settings, view: str) -> str | None:
    rows = spark.sql(f"show tblproperties {settings.schema}.{naming.check_identifier(view)} "
                     f"({naming.sql_string(VIEW_SOURCE)})").collect()
    return rows[0].value if rows and rows[0].key == VIEW_SOURCE else None


def register_warehouse(spark, settings: Settings) -> list[str]:
    """Give every table on storage its name in this session, and forget names whose table is
    gone (idempotent: the Thrift server calls it again and again to pick up what a pipeline run
    created or dropped). Returns the table names."""
    schema = settings.schema
    spark.sql(f"create schema if not exists {schema}")
    known = {row.tableName for row in spark.sql(f"show tables in {schema}").collect()
             if not row.isTemporary}
    tables = storage.list_tables_on_storage(spark, settings)
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
            print(f"reelhouse: view {schema}.{name} skipped: {spark_message(exc, 200)}",
                  file=sys.stderr)
    return tables


def stored_views(spark, settings: Settings) -> dict[str, str]:
    stored = storage.read_text_files(spark, settings.views_location)
    return {name: sql for name, sql in stored.items()
            if naming.IDENTIFIER.match(name)}


def put_back_views(spark, settings: Settings, views: dict[str, str]) -> None:
    """Make the stored view definitions exactly `views` again (after a failed run)."""
    for name in set(stored_views(spark, settings)) - set(views):
        storage.delete_path(spark, f"{settings.views_location}/{name}.sql")
        storage.delete_path(spark, f"{settings.views_location}/{name}.fingerprint")
        spark.sql(f"drop view if exists {settings.schema}.{name}")
    for name, sql in views.items():
        storage.write_text_file(spark, f"{settings.views_location}/{name}.sql", sql)
        # not tested in this state: the next build tests it again
        storage.delete_path(spark, f"{settings.views_location}/{name}.fingerprint")


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
    return spark.catalog.tableExists(naming.qualified(settings, table))


def view_fingerprint(spark, settings: Settings, view: str) -> str | None:
    """What the view was last built and tested from (runner.fingerprint), or None."""
    path, fs = storage.fs_path(spark, f"{settings.views_location}/{view}.fingerprint")
    return storage.read_file(spark, path) if fs.exists(path) else None


def set_view_fingerprint(spark, settings: Settings, view: str, value: str) -> None:
    storage.write_text_file(spark, f"{settings.views_location}/{view}.fingerprint", value)


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
