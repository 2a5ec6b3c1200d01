"""Names and values as SQL text: identifiers checked before they reach SQL, literals quoted,
and a few Python rows as a DataFrame built from literals."""

from __future__ import annotations

import re
from datetime import datetime

from pipelines.errors import ReelhouseError
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
