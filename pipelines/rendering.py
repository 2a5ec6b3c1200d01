"""Rendering Jinja SQL as dbt does: a model, a test macro call or a query from Python gets
`ref()`, `source()`, `var()`, `config()`, `is_incremental()`, `this`, `literal()`,
`raise_compiler_error()` and every macro of the project's macros/ and tests/generic/ folders.

The macros are a module of their own (compiled once per project), not text pasted before the
model, so a render error names the model's own line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import jinja2

from pipelines import naming
from pipelines.errors import ReelhouseError


class SqlValue:
    """A var() value: compares like the raw value in Jinja logic, renders as a SQL literal.
    This is how command-line values reach SQL only quoted, never pasted raw."""

    def __init__(self, value):
        self.value = value

    @property
    def sql(self) -> str:
        value = self.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ReelhouseError(f"var value {value!r} is not a finite number.")
            return repr(value)
        if value is None:
            return "null"
        return naming.sql_string(str(value))

    def __eq__(self, other):
        return self.value == (other.value if isinstance(other, SqlValue) else other)

    def __hash__(self):
        return hash(self.value)

    def __str__(self):
        return self.sql

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)


def parse_var(text: str):
    """`--var key=value`: numbers and booleans become numbers and booleans, the rest strings."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if kind is float and not math.isfinite(value):
            raise ReelhouseError(f"--var value {text!r} is not a finite number.")
        return value
    return text


def parse_vars(pairs: list[str] | None) -> dict:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ReelhouseError(f"--var takes name=value, got {pair!r}.")
        result[naming.check_identifier(key.strip(), "var name")] = parse_var(value)
    return result


def _finalize(value):
    if isinstance(value, SqlValue):
        return value.sql
    return "" if value is None else value


ENVIRONMENT = jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=_finalize,
                                 keep_trailing_newline=True)


@dataclass
class Rendered:
    """One render: the SQL, and what the template called (the DAG is read from these)."""

    sql: str
    refs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _error(model_name: str):
    """dbt's raise_compiler_error: a model's own check fails the render with its message."""

    def raise_compiler_error(message: str):
        raise ReelhouseError(f"Model {model_name}: {message}")

    return raise_compiler_error


def var_function(project, user: str):
    """var(name, default): the command line's value, else the manifest's, else the default."""

    def var(name: str, default=None):
        if name in project.vars:
            return SqlValue(project.vars[name])
        if default is None:
            raise ReelhouseError(f"{user} needs var {name!r}: declare it under vars: in "
                                 f"reelhouse_project.yml or pass --var {name}=VALUE.")
        return SqlValue(default)

    return var


def macros_template(project) -> jinja2.Template:
    """The project's macros as one template, compiled once and kept on the project."""
    if project.macros_template is None:
        try:
            project.macros_template = ENVIRONMENT.from_string(project.macros)
        except jinja2.TemplateSyntaxError as exc:
            raise ReelhouseError(f"The macros do not compile: {exc} (line {exc.lineno} of the "
                                 "macro files, in name order).") from exc
    return project.macros_template


def render(project, name: str, raw_sql: str, parse_only: bool = False,
           incremental: bool = False, refs_to: dict[str, str] | None = None,
           call: tuple[str, dict] | None = None) -> Rendered:
    """Render `raw_sql` (or, with `call`, one macro with keyword arguments) as `name`.
    parse_only: unknown refs are recorded rather than refused (the loader checks them all at
    once). refs_to: relations that stand in for some refs (a test reads the rows about to be
    written)."""
    schema = project.settings.schema
    result = Rendered(sql="")

    def ref(model: str) -> str:
        result.refs.append(model)
        if refs_to and model in refs_to:
            return refs_to[model]
        if not parse_only and model not in project.models:
            raise ReelhouseError(f"{name} refers to unknown model {model}.")
        return f"{schema}.{naming.check_identifier(model, 'model name')}"

    def source(source_name: str, table: str) -> str:
        key = (source_name, table)
        if key not in project.sources:
            raise ReelhouseError(
                f"{name} uses source({source_name!r}, {table!r}), which no sources: "
                "block in the YAML declares.")
        result.sources.append(project.sources[key])
        return project.sources[key]

    def config(**kwargs) -> str:
        result.config.update(kwargs)
        return ""

    context = {
        "ref": ref,
        "source": source,
        "var": var_function(project, name),
        "config": config,
        "is_incremental": lambda: incremental,
        "literal": lambda value: SqlValue(value).sql,
        "raise_compiler_error": _error(name),
        "this": f"{schema}.{name}",
    }
    try:
        macros = macros_template(project).make_module(context)
        context.update({key: getattr(macros, key) for key in dir(macros)
                        if not key.startswith("_")})
        if call is not None:
            macro_name, kwargs = call
            if macro_name not in context:
                raise ReelhouseError(f"{name}: there is no macro {macro_name} in the project's "
                                     "macros/ or tests/generic/.")
            sql = str(context[macro_name](**kwargs))
        else:
            sql = ENVIRONMENT.from_string(raw_sql).render(**context)
    except ReelhouseError:
        raise
    except jinja2.TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        raise ReelhouseError(f"Model {name} does not render: {exc}{line}.") from exc
    result.refs = sorted(set(result.refs))
    result.sources = sorted(set(result.sources))
    result.sql = sql.strip().rstrip(";")
    return result


def render_query(project, name: str, text: str) -> str:
    """Render a query that is not a model file (e.g. a macro call from Python) with the same
    context a model gets: ref, source, var and the project's macros."""
    return render(project, name, text).sql


def render_text(project, text: str, user: str = "A data test") -> str:
    """Render a snippet (a YAML test argument) with var() only."""
    return ENVIRONMENT.from_string(str(text)).render(var=var_function(project, user))


REF_CALL = re.compile(r"\s*ref\(\s*['\"](\w+)['\"]\s*\)\s*")
SOURCE_CALL = re.compile(r"\s*source\(\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]\s*\)\s*")
