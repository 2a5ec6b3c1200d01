"""Materialisations, as dbt-spark names them: how a model's query becomes a view or a table.

- `view`: CREATE OR REPLACE VIEW, its SQL kept on storage (registration) for other sessions.
- `table`: the rows computed once, tested, then written as one CREATE OR REPLACE commit.
- `incremental`: created by its first build, then MERGEd on `unique_key`: new keys inserted, a
  matched row updated only when its values changed. With `not_matched_by_source_action:
  delete` (dbt-databricks' merge option) the query returns the whole table every time and rows
  it no longer returns are deleted.

Each returns False when the model was up to date (same SQL, same input versions) and nothing
was written. A table's rows are tested before they are written, so a failing test leaves the
table as it was; views, and merges that keep rows their query does not return, are tested
after they are written, where their full contents are.
"""

from __future__ import annotations

from pipelines import data_tests, delta_log, fingerprints, registration, writes
from pipelines.errors import ReelhouseError
from pipelines.sql_project import Model, Project

MERGE_BY_SOURCE_ACTIONS = (None, "delete")


def view(spark, project: Project, model: Model, force: bool) -> bool:
    settings = project.settings
    sql = fingerprints.render(project, model)
    built_from = fingerprints.fingerprint(spark, project, model, sql)
    # A view tested on the same SQL over the same table versions needs no second test
    # (at 10M ratings the staging views' tests parse every raw line again).
    if (not force and registration.view_fingerprint(spark, settings, model.name) == built_from
            and registration.table_exists(spark, settings, model.name)):
        return False
    writes.create_view(spark, settings, model.name, sql, model.description)
    _check(project, model, data_tests.run_tests(spark, project, model), written=True)
    registration.set_view_fingerprint(spark, settings, model.name, built_from)
    return True


def table(spark, project: Project, model: Model, force: bool) -> bool:
    built_from, last_built_from, exists = _state(spark, project, model)
    if exists and not force and last_built_from == built_from:
        return False
    df = spark.sql(fingerprints.render(project, model))
    _tested_then_written(spark, project, model, df, lambda: _replace(
        spark, project, model, df, built_from))
    return True


def incremental(spark, project: Project, model: Model, force: bool) -> bool:
    settings = project.settings
    built_from, last_built_from, exists = _state(spark, project, model)
    if exists and not force and last_built_from == built_from:
        return False
    by_source = model.config.get("not_matched_by_source_action")
    if by_source not in MERGE_BY_SOURCE_ACTIONS:
        raise ReelhouseError(f"Model {model.name}: not_matched_by_source_action can only be "
                             f"'delete', not {by_source!r}.")
    df = spark.sql(fingerprints.render(project, model, incremental=exists))
    if not exists or (by_source == "delete" and _columns(df) != _columns(
            spark.table(f"{settings.schema}.{model.name}"))):
        # The first build, or a whole-table query whose schema changed: a replace.
        _tested_then_written(spark, project, model, df, lambda: _replace(
            spark, project, model, df, built_from))
        return True

    def merge():
        keys = model.config["unique_key"]
        keys = [keys] if isinstance(keys, str) else list(keys)
        writes.merge_into(spark, settings, df, model.name, keys, only_changed=True,
                          delete_missing=by_source == "delete")
        # After the MERGE (a MERGE cannot set them in its commit; if this step is lost, the
        # next build merges again, which changes no row).
        writes.update_metadata(
            spark, settings, model.name, model.description, _column_comments(model),
            {fingerprints.PROPERTY: built_from} if last_built_from != built_from else None)

    if by_source == "delete":  # the query is the whole table: test it before it lands
        _tested_then_written(spark, project, model, df, merge)
    else:  # the table keeps rows the query lacks: test the merged whole
        merge()
        _check(project, model, data_tests.run_tests(spark, project, model), written=True)
    return True


STRATEGIES = {"view": view, "table": table, "incremental": incremental}


def materialise(spark, project: Project, model: Model, force: bool = False) -> bool:
    """Build and test one model by its materialisation; False when it was up to date."""
    return STRATEGIES[model.materialized](spark, project, model, force)


def _state(spark, project: Project, model: Model) -> tuple[str, str | None, bool]:
    """(fingerprint now, fingerprint the table was last built from, whether it exists)."""
    settings = project.settings
    exists = registration.table_exists(spark, settings, model.name)
    built_from = fingerprints.fingerprint(spark, project, model,
                                          fingerprints.render(project, model))
    last_built_from = delta_log.table_property(spark, settings, model.name,
                                               fingerprints.PROPERTY)
    return built_from, last_built_from, exists


def _tested_then_written(spark, project: Project, model: Model, df, write) -> None:
    """The rows computed once, kept in memory (spilling to disk), tested, and only then
    written: the tests read those rows from memory instead of the new Delta version (several
    Spark jobs per model fewer), and a failure leaves nothing to roll back."""
    from pyspark import StorageLevel

    candidate = f"__reelhouse_candidate_{model.name}"
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    df.createOrReplaceTempView(candidate)
    try:
        _check(project, model, data_tests.run_tests(spark, project, model, relation=candidate),
               written=False)
        write()
    finally:
        spark.catalog.dropTempView(candidate)
        df.unpersist()


def _replace(spark, project: Project, model: Model, df, built_from: str) -> None:
    partition_by = model.config.get("partition_by")
    partition_by = [partition_by] if isinstance(partition_by, str) else partition_by
    properties = {**model.config.get("tblproperties", {}), fingerprints.PROPERTY: built_from}
    writes.replace_table(spark, project.settings, df, model.name, model.description,
                         _column_comments(model), partition_by, properties)


def _column_comments(model: Model) -> dict:
    return {column: doc.get("description") for column, doc in model.column_docs.items()}


def _check(project: Project, model: Model, failures: list[str], written: bool) -> None:
    if failures:
        raise ReelhouseError(
            f"Data tests failed on {project.settings.schema}.{model.name}: "
            f"{'; '.join(failures)}. "
            + ("The build was rolled back." if written else "Nothing was written."))


def _columns(df) -> list[tuple]:
    return [(f.name.lower(), f.dataType) for f in df.schema]
