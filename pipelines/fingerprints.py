"""What a model was built from, so a build whose inputs are unchanged can be skipped."""

from __future__ import annotations

import hashlib
import json

from pipelines import data_tests, delta_log, registration, rendering
from pipelines.settings import Settings
from pipelines.sql_project import Model, Project

PROPERTY = "reelhouse.fingerprint"  # table property: what the table was last built from


def render(project: Project, model: Model, incremental: bool = False) -> str:
    """A model's SQL as the build runs it."""
    return rendering.render(project, model.name, model.raw_sql, incremental=incremental).sql


def upstream_tables(project: Project, model: Model) -> set[str]:
    """The stored tables a model reads, looking through views to the tables beneath them."""
    tables = set(model.sources)
    for parent in model.refs:
        parent_model = project.models[parent]
        if parent_model.materialized == "view":
            tables |= upstream_tables(project, parent_model)
        else:
            tables.add(f"{project.settings.schema}.{parent}")
    return tables


def upstream_views(project: Project, model: Model) -> dict[str, str]:
    """The rendered SQL of every view a model reads, directly or through other views."""
    views = {}
    for parent in model.refs:
        parent_model = project.models[parent]
        if parent_model.materialized == "view":
            views[parent] = render(project, parent_model)
            views.update(upstream_views(project, parent_model))
    return views


def input_version(spark, settings: Settings, qualified_name: str) -> int | None:
    """A read table's Delta version: from the log listing for the warehouse's own tables
    (no Spark job), through the catalog for any other."""
    schema, _, table = qualified_name.partition(".")
    if schema == settings.schema:
        return delta_log.current_version(spark, settings, table)
    return delta_log.version_of(spark, qualified_name)


def fingerprint(spark, project: Project, model: Model, sql: str) -> str:
    """What a table was built from: its SQL and the Delta version of every table it reads.
    Equal fingerprints mean a rebuild would write the same rows, so it can be skipped."""
    inputs = {name: input_version(spark, project.settings, name)
              for name in sorted(upstream_tables(project, model))}
    payload = json.dumps({
        "sql": sql,
        # A view read on the way is part of the query: its change changes the rows.
        "views": upstream_views(project, model),
        "inputs": inputs,
        # A changed test or threshold must run again; a changed function can change the rows.
        "tests": [test.sql for test in data_tests.data_tests(project, model)],
        "functions": registration.udf_statements(project.settings),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
