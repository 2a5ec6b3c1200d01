"""The model runner: render Jinja SQL models, order them by their refs, materialise them as
Delta tables or views, and run the data tests declared in the YAML beside them.

A model is one `.sql` file whose file name is the table name. It may call
`{{ config(materialized='table'|'view'|'incremental', unique_key=..., partition_by=...,
comment=..., tblproperties={...}, not_matched_by_source_action='delete') }}`,
`{{ ref('model') }}`, `{{ source('raw', 'ratings') }}`, `{{ var('name', default) }}`,
`{{ is_incremental() }}`, `{{ this }}` and any macro from sql/macros/, as in dbt.

An incremental model is created by its first build and MERGEd on its unique_key after that:
new keys are inserted, and a matched row is updated only when its values changed. With
not_matched_by_source_action='delete' (dbt-databricks' name) its query returns the whole table
every time, and rows it no longer returns are deleted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml

from pipelines import delta_log, naming, progress, registration, writes
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings

MATERIALIZATIONS = ("table", "view", "incremental")
FINGERPRINT = "reelhouse.fingerprint"  # table property: what the table was last built from
SAMPLE_ROWS = 5


# --- values from var() ---------------------------------------------------------------------

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


# --- the project: models, sources, docs ----------------------------------------------------

@dataclass
class Model:
    name: str
    path: Path
    raw_sql: str
    config: dict = field(default_factory=dict)
    refs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # qualified raw tables it reads
    doc: dict = field(default_factory=dict)

    @property
    def materialized(self) -> str:
        return self.config.get("materialized", "table")

    @property
    def description(self) -> str | None:
        return self.config.get("comment") or self.doc.get("description")

    @property
    def column_docs(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.doc.get("columns", []) if "name" in c}


@dataclass
class Project:
    settings: Settings
    models: dict[str, Model]
    sources: dict[tuple[str, str], str]
    macros: str
    vars: dict

    def order(self) -> list[str]:
        """Models in dependency order; a cycle fails naming the models in it."""
        ordered, state = [], {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = path[path.index(name):] + [name]
                raise ReelhouseError(f"Models form a cycle: {' -> '.join(cycle)}.")
            state[name] = "visiting"
            for parent in sorted(set(self.models[name].refs) | self.test_refs(name)):
                visit(parent, path + [name])
            state[name] = "done"
            ordered.append(name)

        for name in sorted(self.models):
            visit(name, [])
        return ordered

    def test_refs(self, name: str) -> set[str]:
        """Models a model's relationships tests read: built first, so its tests can run."""
        found = set()
        for column in self.models[name].doc.get("columns", []):
            for spec in column.get("data_tests", column.get("tests", [])) or []:
                if isinstance(spec, dict) and "relationships" in spec:
                    match = re.fullmatch(r"\s*ref\(\s*['\"](\w+)['\"]\s*\)\s*",
                                         str(spec["relationships"].get("to", "")))
                    if match and match.group(1) in self.models and match.group(1) != name:
                        found.add(match.group(1))
        return found

    def children(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {name: set() for name in self.models}
        for model in self.models.values():
            for parent in model.refs:
                result[parent].add(model.name)
        return result

    def select(self, selectors: list[str] | None) -> list[str]:
        """dbt-style selection: `m`, `m+` (m and everything downstream), `+m` (m and everything
        upstream), `+m+`; several selectors are a union. Returned in dependency order."""
        order = self.order()
        if not selectors:
            return order
        children = self.children()
        chosen: set[str] = set()
        for selector in selectors:
            for part in re.split(r"[\s,]+", selector.strip()):
                if not part:
                    continue
                upstream, downstream = part.startswith("+"), part.endswith("+")
                name = part.strip("+")
                if name not in self.models:
                    raise ReelhouseError(
                        f"--select {part!r} names no model; models are: {', '.join(order)}.")
                chosen |= {name}
                if upstream:  # with the models its relationships tests read
                    chosen |= self._walk(
                        name, lambda n: set(self.models[n].refs) | self.test_refs(n))
                if downstream:
                    chosen |= self._walk(name, lambda n: children[n])
        return [name for name in order if name in chosen]

    @staticmethod
    def _walk(start: str, neighbours) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in neighbours(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen


def _read_yaml_docs(folder: Path, default_schema: str) -> tuple[dict, dict, dict]:
    """Model docs by name, sources as {(source, table): schema.table}, and project vars."""
    docs, sources, project_vars = {}, {}, {}
    for path in sorted(folder.rglob("*.yml")):
        content = yaml.safe_load(path.read_text()) or {}
        for model in content.get("models", []) or []:
            docs[model["name"]] = model
        for source in content.get("sources", []) or []:
            schema = source.get("schema", default_schema)
            for table in source.get("tables", []):
                identifier = table.get("identifier", table["name"])
                sources[(source["name"], table["name"])] = (
                    f"{naming.check_identifier(schema, 'schema')}."
                    f"{naming.check_identifier(identifier)}")
        project_vars.update(content.get("vars", {}) or {})
    return docs, sources, project_vars


def load_project(settings: Settings, folders: tuple[str, ...] = ("models", "reports"),
                 cli_vars: dict | None = None) -> Project:
    """Read every model, its YAML docs and the macros; check refs before any SQL runs."""
    models: dict[str, Model] = {}
    docs, sources, project_vars = {}, {}, {}
    for folder in folders:
        root = settings.project_dir / folder
        if not root.exists():
            continue
        folder_docs, folder_sources, folder_vars = _read_yaml_docs(root, settings.schema)
        docs.update(folder_docs)
        sources.update(folder_sources)
        project_vars.update(folder_vars)
        for path in sorted(root.rglob("*.sql")):
            name = path.stem
            if not naming.IDENTIFIER.match(name):
                raise ReelhouseError(
                    f"Model file {path} is not named as a plain identifier: rename it to "
                    "letters, digits and underscores (the file name is the table name).")
            if name in models:
                raise ReelhouseError(
                    f"Two models are named {name}: {models[name].path} and {path}.")
            models[name] = Model(name=name, path=path, raw_sql=path.read_text())
    macros = "\n".join(p.read_text()
                       for p in sorted((settings.project_dir / "macros").glob("*.sql")))
    project = Project(settings, models, sources, macros, {**project_vars, **(cli_vars or {})})
    for model in models.values():
        model.doc = docs.get(model.name, {})
        _render(project, model, parse_only=True)
        if model.materialized not in MATERIALIZATIONS:
            raise ReelhouseError(
                f"Model {model.name} asks for materialized={model.materialized!r}; "
                f"choose one of {', '.join(MATERIALIZATIONS)}.")
        if model.materialized == "incremental" and not model.config.get("unique_key"):
            raise ReelhouseError(f"Incremental model {model.name} needs a unique_key in config().")
    unknown = [(m.name, r) for m in models.values() for r in m.refs if r not in models]
    if unknown:
        listed = "; ".join(f"{m} refers to {r}" for m, r in unknown)
        raise ReelhouseError(f"Unknown ref: {listed}. No SQL was run.")
    project.order()  # cycles fail here, before any SQL runs
    return project


def _raise_compiler_error(model_name: str):
    """dbt's raise_compiler_error: a model's own check fails the render with its message."""

    def raise_compiler_error(message: str):
        raise ReelhouseError(f"Model {model_name}: {message}")

    return raise_compiler_error


def _var_function(project: Project, user: str):
    """var(name, default): the command line's value, else the project's, else the default."""

    def var(name: str, default=None):
        if name in project.vars:
            return SqlValue(project.vars[name])
        if default is None:
            raise ReelhouseError(f"{user} needs var {name!r}: pass --var {name}=VALUE.")
        return SqlValue(default)

    return var


# --- rendering ----------------------------------------------------------------------------

def _environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, finalize=_finalize,
                              keep_trailing_newline=True)


def _render(project: Project, model: Model, parse_only: bool = False,
            incremental: bool = False) -> str:
    """Render one model. In parse mode it records config() and ref() calls (the DAG)."""
    schema = project.settings.schema
    refs: list[str] = []
    sources: list[str] = []
    config: dict = {}

    def ref(name: str) -> str:
        refs.append(name)
        if not parse_only and name not in project.models:
            raise ReelhouseError(f"{model.name} refers to unknown model {name}.")
        return f"{schema}.{naming.check_identifier(name, 'model name')}"

    def source(source_name: str, table: str) -> str:
        key = (source_name, table)
        if key not in project.sources:
            raise ReelhouseError(
                f"{model.name} uses source({source_name!r}, {table!r}), which no sources: "
                "block in the YAML declares.")
        sources.append(project.sources[key])
        return project.sources[key]

    def config_(**kwargs) -> str:
        config.update(kwargs)
        return ""

    context = {
        "ref": ref,
        "source": source,
        "var": _var_function(project, model.name),
        "config": config_,
        "is_incremental": lambda: incremental,
        "raise_compiler_error": _raise_compiler_error(model.name),
        "this": f"{schema}.{model.name}",
    }
    try:
        template = _environment().from_string(project.macros + "\n" + model.raw_sql)
        sql = template.render(**context)
    except ReelhouseError:
        raise
    except jinja2.TemplateError as exc:
        raise ReelhouseError(f"Model {model.name} does not render: {exc}.") from exc
    if parse_only:
        model.refs = sorted(set(refs))
        model.sources = sorted(set(sources))
        model.config = config
    return sql.strip().rstrip(";")


def render_query(project: Project, name: str, text: str) -> str:
    """Render a query that is not a model file (e.g. a macro call from Python) with the same
    context a model gets: ref, source, var and the project's macros."""
    return _render(project, Model(name=name, path=Path(f"<{name}>"), raw_sql=text))


def render_text(project: Project, text: str) -> str:
    """Render a snippet (a YAML test expression) with var() only."""

    return _environment().from_string(str(text)).render(var=_var_function(project, "A data test"))


# --- data tests -----------------------------------------------------------------------------

@dataclass
class DataTest:
    name: str
    sql: str  # returns the failing rows; zero rows is a pass
    severity: str = "error"
    message: str | None = None  # what to tell the user when it fails, if not the generic line


def _literal(value) -> str:
    return SqlValue(value).sql


def _test_target(project: Project, to: str) -> str:
    match = re.fullmatch(r"\s*ref\(\s*['\"](\w+)['\"]\s*\)\s*", to)
    if match:
        return f"{project.settings.schema}.{naming.check_identifier(match.group(1))}"
    match = re.fullmatch(r"\s*source\(\s*['\"](\w+)['\"]\s*,\s*['\"](\w+)['\"]\s*\)\s*", to)
    if match and (match.group(1), match.group(2)) in project.sources:
        return project.sources[(match.group(1), match.group(2))]
    raise ReelhouseError(f"relationships test target {to!r} must be ref('model') or source().")


def _one_test(project: Project, table: str, column: str | None, spec,
              relation: str | None = None) -> DataTest:
    """One YAML test as a query returning its failing rows. It reads `relation` (default the
    table itself): the runner points it at the rows about to be written."""
    table_label = table.split(".")[-1]
    table = relation or table
    kind, args = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
    args = dict(args or {})
    severity = args.pop("severity", "error")
    col = naming.check_identifier(column, "column name") if column else None
    if kind == "not_null":
        sql = f"select * from {table} where {col} is null"
    elif kind == "unique":
        columns = [naming.check_identifier(c, "column name")
                   for c in args.get("columns", [col])]
        keys = ", ".join(columns)
        sql = (f"select {keys}, count(*) as num_rows from {table} "
               f"group by {keys} having count(*) > 1")
        column = "+".join(columns)
    elif kind == "accepted_values":
        values = ", ".join(_literal(v) for v in args["values"])
        sql = f"select * from {table} where {col} is not null and {col} not in ({values})"
    elif kind == "accepted_range":
        inclusive = args.get("inclusive", True)
        checks = []
        if "min_value" in args:
            checks.append(f"{col} {'<' if inclusive else '<='} {_literal(args['min_value'])}")
        if "max_value" in args:
            checks.append(f"{col} {'>' if inclusive else '>='} {_literal(args['max_value'])}")
        sql = f"select * from {table} where " + " or ".join(checks)
    elif kind == "relationships":
        parent = _test_target(project, args["to"])
        field_ = naming.check_identifier(args["field"], "column name")
        sql = (f"select child.* from {table} as child left anti join {parent} as parent "
               f"on child.{col} = parent.{field_} where child.{col} is not null")
    elif kind == "expression_is_true":
        # Project-authored YAML (not user input) may state any boolean expression; var() in it
        # renders as a literal, so a threshold can come from the command line.
        expression = render_text(project, args["expression"])
        sql = f"select * from {table} where not coalesce(({expression}), false)"
    else:
        raise ReelhouseError(f"Unknown data test {kind!r} on {table}.")
    label = f"{kind}({table_label}{'.' + column if column else ''})"
    return DataTest(name=label, sql=sql, severity=severity, message=args.get("message"))


def data_tests(project: Project, model: Model, relation: str | None = None) -> list[DataTest]:
    """The model's YAML tests, reading its table or, if given, another relation holding the
    rows the table is about to get."""
    table = f"{project.settings.schema}.{model.name}"
    tests = []
    for column in model.doc.get("columns", []):
        for spec in column.get("data_tests", column.get("tests", [])) or []:
            tests.append(_one_test(project, table, column["name"], spec, relation))
    for spec in model.doc.get("data_tests", model.doc.get("tests", [])) or []:
        tests.append(_one_test(project, table, None, spec, relation))
    return tests


def run_tests(spark, project: Project, model: Model, relation: str | None = None) -> list[str]:
    """Run a model's data tests; returns the failures of severity error (warnings are printed).
    All of a model's tests are counted in one Spark job (a union of their failing rows), so a
    model with ten tests costs one pass, not ten; samples are fetched only for failures."""
    tests = data_tests(project, model, relation)
    if not tests:
        return []
    union = "\nunion all\n".join(f"select {index} as test_index from ({test.sql})"
                                  for index, test in enumerate(tests))
    counts = dict(tuple(row) for row in spark.sql(
        f"select test_index, count(*) from ({union}) group by test_index").collect())
    failures = []
    for index, test in enumerate(tests):
        num_failing = counts.get(index, 0)
        if num_failing == 0:
            continue
        sample = [row.asDict() for row in spark.sql(test.sql).limit(SAMPLE_ROWS).collect()]
        level = "WARN" if test.severity == "warn" else "FAIL"
        progress.say(f"  {level} {test.name}: {num_failing:,} failing rows, e.g. {sample}")
        if test.severity != "warn":
            failures.append(test.message or f"{test.name} ({num_failing:,} rows)")
    return failures


# --- compile and build ------------------------------------------------------------------------

def compile_project(project: Project, selectors: list[str] | None = None) -> list[Path]:
    """Write each selected model's rendered SQL, and its tests, under target/compiled/."""
    out = project.settings.target_dir / "compiled"
    written = []
    for name in project.select(selectors):
        model = project.models[name]
        layer = model.path.parent.name
        path = out / layer / f"{name}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(project, model) + "\n")
        written.append(path)
        for index, test in enumerate(data_tests(project, model)):
            test_path = out / "tests" / f"{name}__{index:02d}.sql"
            test_path.parent.mkdir(parents=True, exist_ok=True)
            test_path.write_text(f"-- {test.name} ({test.severity})\n{test.sql}\n")
    return written


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
            views[parent] = _render(project, parent_model)
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
        "tests": [test.sql for test in data_tests(project, model)],
        "functions": registration.udf_statements(project.settings),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def dependencies(project: Project, names: list[str]) -> dict[str, set[str]]:
    """For each selected model, the selected models it must wait for (refs and the models its
    relationships tests read)."""
    chosen = set(names)
    return {name: (set(project.models[name].refs) | project.test_refs(name)) & chosen
            for name in names}


def build(spark, project: Project, selectors: list[str] | None = None,
          force: bool = False) -> list[str]:
    """Materialise the selected models, each after the models it reads, testing each after it
    is built. Up to `settings.threads` models whose inputs are ready build side by side (as
    dbt's threads): most of a small model's time is Spark scheduling and Delta commits, not
    CPU, so overlapping them fills the cores. A table whose SQL and inputs are unchanged since
    it was built is skipped (unless force). If a model or a test fails, the models still
    running finish, then every table built by this call goes back to the version it had
    before, so a failed build leaves the warehouse as it was. Returns the models rebuilt."""
    settings = project.settings
    names = project.select(selectors)
    waits_for = dependencies(project, names)
    # Of the models ready to start, the one with the most models downstream goes first, so the
    # long chain (ratings -> ratings_split -> the stats) is not queued behind a leaf such as
    # rejected_lines (at 10M ratings ratings waited 350 s for a thread that way).
    children = project.children()
    downstream = {name: len(project._walk(name, lambda n: children[n])) for name in names}
    before: dict[str, int | None] = {}
    finished: list[str] = []
    rebuilt: list[str] = []
    pending = list(names)
    running: dict[Future, str] = {}
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, settings.threads),
                              thread_name_prefix="reelhouse-model")
    try:
        while pending or running:
            ready = sorted((name for name in pending if waits_for[name] <= set(finished)),
                           key=lambda name: -downstream[name])
            for name in ready if failure is None else []:
                if len(running) >= settings.threads:
                    break
                pending.remove(name)
                if project.models[name].materialized != "view":
                    before[name] = delta_log.current_version(spark, settings, name)
                running[pool.submit(_build_one, spark, project, name, force)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                try:
                    line = future.result()
                except BaseException as exc:  # noqa: BLE001 - re-raised once the others stop
                    failure = failure or exc
                    continue
                finished.append(name)
                if line is not None:
                    rebuilt.append(name)
                model = project.models[name]
                progress.say(f"[{len(finished)}/{len(names)}] {model.materialized:<11} "
                             f"{settings.schema}.{name} "
                             f"{line if line is not None else 'up to date (inputs unchanged)'}")
        if failure is not None:
            raise failure
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for name, error in writes.restore_all(spark, settings, before).items():
            progress.say(f"could not restore {name} to version {before[name]}: {error}")
        raise
    pool.shutdown(wait=True)
    return [name for name in names if name in rebuilt]  # in dependency order


def _build_one(spark, project: Project, name: str, force: bool) -> str | None:
    """Build and test one model (on a worker thread); the progress line's tail when it was
    rebuilt, None when it was up to date."""
    settings = project.settings
    model = project.models[name]
    started = time.monotonic()
    # Spark jobs carry the model's name: the UI and event log show where the time goes.
    spark.sparkContext.setJobDescription(f"model {settings.schema}.{name}")
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", name)  # see session.py
    try:
        if not _materialise(spark, project, model, force):
            return None
    except ReelhouseError:
        raise
    except Exception as exc:  # Spark's analysis or runtime error: one line says it
        raise ReelhouseError(
            f"Model {name} ({model.path.relative_to(settings.project_dir.parent)}) failed: "
            f"{spark_message(exc)}") from exc
    finally:
        spark.sparkContext.setJobDescription(None)
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", None)
    rows = delta_log.rows_in_last_commit(spark, settings, name)
    rows = f", {rows:,} rows" if rows is not None and model.materialized != "view" else ""
    return f"ok ({time.monotonic() - started:.1f}s{rows})"


def _materialise(spark, project: Project, model: Model, force: bool = False) -> bool:
    """Build and test one model; False when it was up to date and nothing was written.

    A table's rows are computed once, kept in memory (spilling to disk), tested, and only
    then written: a failing test leaves the table as it was, with nothing to roll back, and
    the tests read those rows from memory instead of the new Delta version (several Spark
    jobs per model fewer). Views, and incremental models that keep rows their query does not
    return, are tested after they are written, where their full contents are."""
    settings = project.settings
    column_comments = {c: d.get("description") for c, d in model.column_docs.items()}
    if model.materialized == "view":
        sql = _render(project, model)
        built_from = fingerprint(spark, project, model, sql)
        # A view tested on the same SQL over the same table versions needs no second test
        # (at 10M ratings the staging views' tests parse every raw line again).
        if (not force and registration.view_fingerprint(spark, settings, model.name) == built_from
                and registration.table_exists(spark, settings, model.name)):
            return False
        writes.create_view(spark, settings, model.name, sql, model.description)
        _check(settings, model, run_tests(spark, project, model), written=True)
        registration.set_view_fingerprint(spark, settings, model.name, built_from)
        return True
    exists = registration.table_exists(spark, settings, model.name)
    incremental = model.materialized == "incremental" and exists
    sql = _render(project, model, incremental=incremental)
    built_from = fingerprint(spark, project, model, _render(project, model))
    last_built_from = delta_log.table_property(spark, settings, model.name, FINGERPRINT)
    if exists and not force and last_built_from == built_from:
        return False
    by_source = model.config.get("not_matched_by_source_action")
    if by_source not in (None, "delete"):
        raise ReelhouseError(f"Model {model.name}: not_matched_by_source_action can only be "
                             f"'delete', not {by_source!r}.")
    df = spark.sql(sql)
    if incremental and by_source == "delete" and _columns(df) != _columns(
            spark.table(f"{settings.schema}.{model.name}")):
        incremental = False  # its query is the whole table: a changed schema is a rebuild
    # The table will hold exactly the query's rows unless a MERGE keeps rows it lacks.
    test_first = not incremental or by_source == "delete"
    candidate = f"__reelhouse_candidate_{model.name}"
    if test_first:
        from pyspark import StorageLevel

        df = df.persist(StorageLevel.MEMORY_AND_DISK)
        df.createOrReplaceTempView(candidate)
    try:
        if test_first:
            _check(settings, model, run_tests(spark, project, model, relation=candidate),
                   written=False)
        _write(spark, project, model, df, incremental, by_source, column_comments,
               built_from, last_built_from)
    finally:
        if test_first:
            spark.catalog.dropTempView(candidate)
            df.unpersist()
    if not test_first:
        _check(settings, model, run_tests(spark, project, model), written=True)
    return True


def _check(settings: Settings, model: Model, failures: list[str], written: bool) -> None:
    if failures:
        raise ReelhouseError(
            f"Data tests failed on {settings.schema}.{model.name}: {'; '.join(failures)}. "
            + ("The build was rolled back." if written else "Nothing was written."))


def _write(spark, project: Project, model: Model, df, incremental: bool, by_source: str | None,
           column_comments: dict, built_from: str, last_built_from: str | None) -> None:
    settings = project.settings
    if incremental:
        keys = model.config["unique_key"]
        keys = [keys] if isinstance(keys, str) else list(keys)
        writes.merge_into(spark, settings, df, model.name, keys, only_changed=True,
                           delete_missing=by_source == "delete")
        # After the MERGE (a MERGE cannot set them in its commit; if this step is lost, the
        # next build merges again, which changes no row).
        writes.update_metadata(
            spark, settings, model.name, model.description, column_comments,
            {FINGERPRINT: built_from} if last_built_from != built_from else None)
    else:
        partition_by = model.config.get("partition_by")
        partition_by = [partition_by] if isinstance(partition_by, str) else partition_by
        properties = {**model.config.get("tblproperties", {}), FINGERPRINT: built_from}
        writes.replace_table(spark, settings, df, model.name, model.description,
                              column_comments, partition_by, properties)


def _columns(df) -> list[tuple]:
    return [(f.name.lower(), f.dataType) for f in df.schema]
