"""The SQL project, read from its folder (settings.project_dir) before any SQL runs.

reelhouse_project.yml is the manifest (after dbt_project.yml): the folders that hold models,
each folder's defaults (`+materialized`, `+tags`: which step builds it), and every var with its
default. A model is one `.sql` file whose file name is the table name; its `{{ config(...) }}`
holds only what differs from its folder. Docs, sources and data tests are YAML beside the
models; generic tests are macros in tests/generic/, singular tests `.sql` files in tests/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines import naming, rendering
from pipelines.errors import ReelhouseError, spark_message
from pipelines.settings import Settings, packaged_project_dir

MANIFEST = "reelhouse_project.yml"
MATERIALIZATIONS = ("table", "view", "incremental")
DEFAULT_PATHS = {"model-paths": ["models", "reports"], "macro-paths": ["macros"],
                 "test-paths": ["tests"]}


@dataclass
class Model:
    name: str
    path: Path
    raw_sql: str
    config: dict = field(default_factory=dict)  # folder defaults, then the model's config()
    refs: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # qualified raw tables it reads
    doc: dict = field(default_factory=dict)

    @property
    def materialized(self) -> str:
        return self.config.get("materialized", "table")

    @property
    def tags(self) -> set[str]:
        return set(self.config.get("tags", []))

    @property
    def description(self) -> str | None:
        return self.config.get("comment") or self.doc.get("description")

    @property
    def column_docs(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.doc.get("columns", []) if "name" in c}


@dataclass
class SingularTest:
    """A `.sql` file in tests/ returning failing rows; it runs with the tests of the last
    model it reads (in build order), on that model's new rows."""

    name: str
    path: Path
    raw_sql: str
    refs: list[str]
    severity: str = "error"


@dataclass
class Project:
    settings: Settings
    models: dict[str, Model]
    sources: dict[tuple[str, str], str]
    macros: str
    vars: dict
    singular_tests: dict[str, list[SingularTest]] = field(default_factory=dict)
    macros_template: object = None  # compiled once, by rendering.macros_template

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
            for parent in sorted(self.waits_for(name)):
                visit(parent, path + [name])
            state[name] = "done"
            ordered.append(name)

        for name in sorted(self.models):
            visit(name, [])
        return ordered

    def test_refs(self, name: str) -> set[str]:
        """Other models a model's tests read (a relationships test's parent, a singular
        test's other inputs): built first, so its tests can run."""
        found = set()
        for _column, spec in test_specs(self.models[name].doc):
            _kind, args = kind_and_args(spec)
            for value in args.values():
                match = rendering.REF_CALL.fullmatch(value) if isinstance(value, str) else None
                if match:
                    found.add(match.group(1))
        for test in self.singular_tests.get(name, []):
            found |= set(test.refs)
        return {ref for ref in found if ref in self.models and ref != name}

    def waits_for(self, name: str) -> set[str]:
        return set(self.models[name].refs) | self.test_refs(name)

    def children(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {name: set() for name in self.models}
        for model in self.models.values():
            for parent in model.refs:
                result[parent].add(model.name)
        return result

    def tagged(self, tag: str) -> list[str]:
        """The models a step builds (their folder's or their own `tags`), in build order."""
        return [name for name in self.order() if tag in self.models[name].tags]

    def select(self, selectors: list[str] | None) -> list[str]:
        """dbt-style selection: `m`, `m+` (m and everything downstream), `+m` (m and everything
        upstream), `+m+`, `tag:NAME`; several selectors are a union. Returned in dependency
        order."""
        order = self.order()
        if not selectors:
            return order
        children = self.children()
        chosen: set[str] = set()
        for selector in selectors:
            for part in re.split(r"[\s,]+", selector.strip()):
                if not part:
                    continue
                if part.startswith("tag:"):
                    chosen |= set(self.tagged(part[4:]))
                    continue
                upstream, downstream = part.startswith("+"), part.endswith("+")
                name = part.strip("+")
                if name not in self.models:
                    raise ReelhouseError(
                        f"--select {part!r} names no model; models are: {', '.join(order)}.")
                chosen |= {name}
                if upstream:  # with the models its tests read
                    chosen |= self.walk(name, self.waits_for)
                if downstream:
                    chosen |= self.walk(name, lambda n: children[n])
        return [name for name in order if name in chosen]

    @staticmethod
    def walk(start: str, neighbours) -> set[str]:
        seen, stack = set(), [start]
        while stack:
            for nxt in neighbours(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen


def test_specs(doc: dict) -> list[tuple[str | None, object]]:
    """A model's YAML tests as (column or None, spec), columns first."""
    specs = []
    for column in doc.get("columns", []):
        for spec in column.get("data_tests", column.get("tests", [])) or []:
            specs.append((column["name"], spec))
    for spec in doc.get("data_tests", doc.get("tests", [])) or []:
        specs.append((None, spec))
    return specs


def kind_and_args(spec) -> tuple[str, dict]:
    """`not_null` or `{accepted_range: {min_value: 1}}` as (kind, arguments)."""
    kind, args = (spec, {}) if isinstance(spec, str) else next(iter(spec.items()))
    return kind, dict(args or {})


def read_manifest(project_dir: Path) -> dict:
    path = project_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ReelhouseError(f"{path} is not valid YAML: {spark_message(exc)}.") from exc
    if not isinstance(manifest, dict):
        raise ReelhouseError(f"{path} must be a mapping (name:, folders:, vars:).")
    return manifest


def folder_config(manifest: dict, relative: Path) -> dict:
    """A folder's defaults: the `+key` values on the way down `folders:` to it, the nearest
    winning, tags added up (as dbt_project.yml's `+materialized`, `+tags`)."""
    config: dict = {}
    node = manifest.get("folders") or {}
    for part in (None, *relative.parts):
        if part is not None:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        for key, value in node.items():
            if key.startswith("+"):
                if key == "+tags":
                    config["tags"] = sorted(set(config.get("tags", [])) | set(value or []))
                else:
                    config[key[1:]] = value
    return config


def _read_yaml_docs(folder: Path, default_schema: str) -> tuple[dict, dict]:
    """Docs by model or source table name, and sources as {(source, table): schema.table}."""
    docs, sources = {}, {}
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
                docs.setdefault(identifier, table)
    return docs, sources


def _sql_files(root: Path) -> list[Path]:
    paths = sorted(root.rglob("*.sql"))
    for path in paths:
        if not naming.IDENTIFIER.match(path.stem):
            raise ReelhouseError(
                f"Model file {path} is not named as a plain identifier: rename it to letters, "
                "digits and underscores (the file name is the table name).")
    return paths


def _macro_files(root: Path, paths: dict) -> list[Path]:
    """reelhouse's built-in generic tests, then the project's macros and generic tests (a
    project's own test_<kind> replaces the built-in one: a later macro wins)."""
    built_in = packaged_project_dir() / "tests" / "generic"
    files = sorted(built_in.glob("*.sql"))
    for folder in paths["macro-paths"]:
        files += sorted((root / folder).glob("*.sql"))
    for folder in paths["test-paths"]:
        files += sorted((root / folder / "generic").glob("*.sql"))
    return list(dict.fromkeys(path.resolve() for path in files))


def load_project(settings: Settings, folders: tuple[str, ...] | None = None,
                 cli_vars: dict | None = None) -> Project:
    """Read the manifest, every model, its YAML docs, the macros and the tests; check refs
    before any SQL runs. folders: the model folders to read (default the manifest's
    model-paths)."""
    root = settings.project_dir
    if not root.is_dir():
        raise ReelhouseError(f"The SQL project folder {root} does not exist: pass --project-dir "
                             "DIR (a folder with reelhouse_project.yml) or unset "
                             "REELHOUSE_PROJECT_DIR.")
    manifest = read_manifest(root)
    paths = {key: manifest.get(key, default) for key, default in DEFAULT_PATHS.items()}
    models: dict[str, Model] = {}
    docs, sources = {}, {}
    for folder in folders if folders is not None else paths["model-paths"]:
        if not (root / folder).exists():
            continue
        folder_docs, folder_sources = _read_yaml_docs(root / folder, settings.schema)
        docs.update(folder_docs)
        sources.update(folder_sources)
        for path in _sql_files(root / folder):
            if path.stem in models:
                raise ReelhouseError(
                    f"Two models are named {path.stem}: {models[path.stem].path} and {path}.")
            models[path.stem] = Model(name=path.stem, path=path, raw_sql=path.read_text())
    macros = "\n".join(path.read_text() for path in _macro_files(root, paths))
    project_vars = dict(manifest.get("vars") or {})
    project = Project(settings, models, sources, macros, {**project_vars, **(cli_vars or {})})
    for model in models.values():
        model.doc = docs.get(model.name, {})
        rendered = rendering.render(project, model.name, model.raw_sql, parse_only=True)
        model.refs, model.sources = rendered.refs, rendered.sources
        folder = folder_config(manifest, model.path.parent.relative_to(root))
        own_tags = rendered.config.pop("tags", [])
        model.config = {**folder, **rendered.config}
        model.config["tags"] = sorted(set(folder.get("tags", [])) | set(own_tags))
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
    project.order()
    _attach_singular_tests(project, paths["test-paths"])
    project.order()  # cycles fail here, before any SQL runs
    return project


def _attach_singular_tests(project: Project, test_paths: list[str]) -> None:
    """Each singular test joins the tests of the last model it reads in build order; one
    that reads no model being loaded (e.g. a report's test when only models/ is read) waits."""
    position = {name: index for index, name in enumerate(project.order())}
    for folder in test_paths:
        root = project.settings.project_dir / folder
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.sql")):
            raw = path.read_text()
            rendered = rendering.render(project, path.stem, raw, parse_only=True)
            refs = [ref for ref in rendered.refs if ref in project.models]
            if len(refs) != len(rendered.refs) or not refs:
                continue
            owner = max(refs, key=position.__getitem__)
            project.singular_tests.setdefault(owner, []).append(SingularTest(
                name=path.stem, path=path, raw_sql=raw, refs=refs,
                severity=rendered.config.get("severity", "error")))


def table_docs(settings: Settings, table: str) -> tuple[str | None, dict[str, str]]:
    """A table's description and column descriptions from the project's YAML (a model's or a
    source's): what the Python steps that write a table (train, tune) give it as comments, so
    its docs live in one place."""
    manifest = read_manifest(settings.project_dir)
    doc: dict = {}
    for folder in manifest.get("model-paths", DEFAULT_PATHS["model-paths"]):
        if (settings.project_dir / folder).is_dir():
            doc = _read_yaml_docs(settings.project_dir / folder, settings.schema)[0].get(
                table, doc)
    columns = {c["name"]: c.get("description") for c in doc.get("columns", []) if "name" in c}
    return doc.get("description"), columns
