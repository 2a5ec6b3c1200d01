"""Data tests: each one a query returning the failing rows, zero rows a pass (as dbt's).

A YAML test `kind: {args}` renders the generic test macro test_<kind> from the project's
tests/generic/ folder; a singular test is a `.sql` file in tests/. This module only renders and
counts them: a new kind of test is a new macro, not Python. `severity: warn` and `message:` are
the only arguments it reads itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import naming, progress, rendering
from pipelines.sql_project import Model, Project, kind_and_args, test_specs

SAMPLE_ROWS = 5
TEST_CONFIG = ("severity", "message")  # what a test's YAML says about it, not to its macro


@dataclass
class DataTest:
    name: str
    sql: str  # returns the failing rows; zero rows is a pass
    severity: str = "error"
    message: str | None = None  # what to tell the user when it fails, if not the generic line


def _argument(project: Project, value, user: str):
    """A YAML argument as its macro receives it: `ref('m')` / `source('s', 't')` as the
    relation, text with `{{ var(...) }}` rendered, anything else as written."""
    if not isinstance(value, str):
        return value
    if rendering.REF_CALL.fullmatch(value) or rendering.SOURCE_CALL.fullmatch(value):
        return rendering.render_query(project, user, "{{ " + value.strip() + " }}")
    return rendering.render_text(project, value) if "{" in value else value


def generic_test(project: Project, model: Model, column: str | None, spec,
                 relation: str) -> DataTest:
    kind, args = kind_and_args(spec)
    label_column = column or "+".join(args.get("columns", []))
    label = f"{kind}({model.name}{'.' + label_column if label_column else ''})"
    config = {key: args.pop(key) for key in TEST_CONFIG if key in args}
    kwargs = {key: _argument(project, value, label) for key, value in args.items()}
    kwargs["model"] = relation
    if column is not None:
        kwargs["column_name"] = naming.check_identifier(column, "column name")
    sql = rendering.render(project, label, "", call=(f"test_{kind}", kwargs)).sql
    return DataTest(name=label, sql=sql, severity=config.get("severity", "error"),
                    message=config.get("message"))


def data_tests(project: Project, model: Model, relation: str | None = None) -> list[DataTest]:
    """The model's tests, reading its table or, if given, another relation holding the rows
    the table is about to get."""
    relation = relation or f"{project.settings.schema}.{model.name}"
    tests = [generic_test(project, model, column, spec, relation)
             for column, spec in test_specs(model.doc)]
    for test in project.singular_tests.get(model.name, []):
        sql = rendering.render(project, test.name, test.raw_sql,
                               refs_to={model.name: relation}).sql
        tests.append(DataTest(name=f"{test.name}({model.name})", sql=sql,
                              severity=test.severity))
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
