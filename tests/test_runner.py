"""The model runner on small hand-made projects: order, errors before SQL, tests, incremental."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipelines import delta_log, registration, rendering, runner, session, sql_project, writes
from pipelines.errors import ReelhouseError


def project_dir(root: Path, models: dict[str, str], yml: str = "", macros: str = "") -> Path:
    sql = root / "sql"
    (sql / "models").mkdir(parents=True, exist_ok=True)
    (sql / "macros").mkdir(parents=True, exist_ok=True)
    for name, text in models.items():
        (sql / "models" / f"{name}.sql").parent.mkdir(parents=True, exist_ok=True)
        (sql / "models" / f"{name}.sql").write_text(text)
    if yml:
        (sql / "models" / "_models.yml").write_text(yml)
    if macros:
        (sql / "macros" / "macros.sql").write_text(macros)
    return sql


def with_sql(settings, project_dir: Path):
    return dataclasses.replace(settings, project_dir=project_dir)


def test_models_run_in_dependency_order_and_select_walks_the_dag(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "c_top": "select * from {{ ref('b_mid') }}",
        "b_mid": "select n + 1 as n from {{ ref('a_base') }}",
        "a_base": "select 1 as n",
        "z_other": "select 2 as n",
    })
    project = sql_project.load_project(with_sql(new_warehouse(), sql))
    order = project.order()
    assert order.index("a_base") < order.index("b_mid") < order.index("c_top")
    assert project.select(["b_mid+"]) == ["b_mid", "c_top"]
    assert project.select(["+b_mid"]) == ["a_base", "b_mid"]
    assert project.select(["z_other"]) == ["z_other"]
    with pytest.raises(ReelhouseError, match="names no model"):
        project.select(["nope"])


def test_a_cycle_fails_before_any_sql_naming_the_models(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "first": "select * from {{ ref('second') }}",
        "second": "select * from {{ ref('third') }}",
        "third": "select * from {{ ref('first') }}",
    })
    with pytest.raises(ReelhouseError, match="cycle") as caught:
        sql_project.load_project(with_sql(new_warehouse(), sql))
    for name in ("first", "second", "third"):
        assert name in str(caught.value)


def test_an_unknown_ref_fails_before_any_sql(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"orphan": "select * from {{ ref('missing_model') }}"})
    with pytest.raises(ReelhouseError, match="orphan refers to missing_model"):
        sql_project.load_project(with_sql(new_warehouse(), sql))


def test_model_file_names_must_be_plain_identifiers(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"bad-name; drop": "select 1 as n"})
    with pytest.raises(ReelhouseError, match="plain identifier"):
        sql_project.load_project(with_sql(new_warehouse(), sql))


def test_build_writes_delta_tables_views_and_comments(spark, tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "numbers": "{{ config(materialized='table', comment='Some numbers') }}\n"
                   "select id as n, id % 2 as parity from range(10)",
        "odd_numbers": "{{ config(materialized='view') }}\n"
                       "select n from {{ ref('numbers') }} where parity = 1",
    }, yml="""
models:
  - name: numbers
    columns:
      - name: n
        description: The number itself.
        data_tests: [not_null, unique]
      - name: parity
        description: 1 for odd numbers.
        data_tests:
          - accepted_values: {values: [0, 1]}
""")
    settings = with_sql(new_warehouse(), sql)
    runner.build(spark, sql_project.load_project(settings))
    detail = spark.sql("describe detail movielens.numbers").first()
    assert detail.format == "delta"
    assert detail.location.endswith("/movielens/numbers")
    assert detail.description == "Some numbers"
    comments = {r.col_name: r.comment for r in spark.sql("describe table movielens.numbers")
                .collect()}
    assert comments["n"] == "The number itself."
    assert spark.sql("select count(*) from movielens.odd_numbers").first()[0] == 5
    # The view's SQL is kept on storage, so a fresh catalog can recreate it by name.
    spark.sql("drop view movielens.odd_numbers")
    registration.register_warehouse(spark, settings)
    assert spark.sql("select count(*) from movielens.odd_numbers").first()[0] == 5


def test_a_failing_data_test_writes_nothing_and_rolls_back_the_models_built_before(
        spark, tmp_path, new_warehouse, capsys):
    models = {"ids": "select id from range({{ var('rows', 3) }})",
              "scores": "select id as score from {{ ref('ids') }}"}
    yml = """
models:
  - name: scores
    columns:
      - name: score
        description: A score between 0 and 4.
        data_tests:
          - accepted_range: {min_value: 0, max_value: 4}
"""
    sql = project_dir(tmp_path, models, yml)
    settings = with_sql(new_warehouse(), sql)
    runner.build(spark, sql_project.load_project(settings))
    versions = {t: delta_log.current_version(spark, settings, t) for t in ("ids", "scores")}

    project = sql_project.load_project(settings, cli_vars={"rows": 8})
    with pytest.raises(ReelhouseError, match=r"accepted_range\(scores.score\) \(3 rows\)\. "
                                             r"Nothing was written"):
        runner.build(spark, project)
    assert "3 failing rows" in capsys.readouterr().err
    # scores was tested before it was written: no new version at all.
    assert delta_log.current_version(spark, settings, "scores") == versions["scores"]
    # ids, built (8 rows) before scores failed, was put back: a RESTORE commit, 3 rows again.
    assert delta_log.current_version(spark, settings, "ids") > versions["ids"]
    for table in ("ids", "scores"):
        assert spark.sql(f"select count(*) from movielens.{table}").first()[0] == 3


def test_a_small_warehouse_builds_with_the_small_data_sql_settings(spark, tmp_path,
                                                                 new_warehouse, monkeypatch):
    """The settings a model's query ran under, recorded by the query itself (Spark substitutes
    ${key} with the setting's value): Spark's values without raw ratings or above the size,
    the small-data ones below it except a key given with --conf, Spark's values again after."""
    sql = project_dir(tmp_path, {"seen": (
        "{{ config(materialized='table') }}\n"
        "select '${spark.sql.adaptive.enabled}' as adaptive, "
        "'${spark.sql.codegen.wholeStage}' as whole_stage")})
    settings = dataclasses.replace(with_sql(new_warehouse(), sql), spark_conf=())
    keys = ("spark.sql.adaptive.enabled", "spark.sql.codegen.wholeStage")
    before = {key: spark.conf.get(key) for key in keys}

    def seen(build_settings) -> tuple:
        runner.build(spark, sql_project.load_project(build_settings), force=True)
        assert tuple(spark.conf.get(key) for key in keys) == ("true", "true")  # put back
        return tuple(spark.table("movielens.seen").first())

    try:
        for key in keys:
            spark.conf.set(key, "true")  # Spark's defaults (this session runs with them off)
        assert seen(settings) == ("true", "true")  # no raw ratings yet
        writes.replace_table(spark, settings, spark.range(10), "raw_ratings")
        assert seen(settings) == ("false", "false")
        given = dataclasses.replace(settings, spark_conf=((keys[0], "true"),))
        assert seen(given) == ("true", "false")
        monkeypatch.setattr(session, "SMALL_DATA_MAX_BYTES", 0)
        assert seen(settings) == ("true", "true")
    finally:
        for key, value in before.items():
            spark.conf.set(key, value)


def test_an_incremental_model_run_twice_leaves_the_same_rows(spark, tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "events": "{{ config(materialized='incremental', unique_key=['kind', 'id']) }}\n"
                  "select id, 'a' as kind, id * 10 as amount from range(5)\n"
                  "{% if is_incremental() %}where id >= 0{% endif %}",
    })
    settings = with_sql(new_warehouse(), sql)
    project = sql_project.load_project(settings)
    runner.build(spark, project)
    first = sorted(tuple(r) for r in spark.sql("select * from movielens.events").collect())
    runner.build(spark, project, force=True)  # force: unchanged inputs would skip it
    second = sorted(tuple(r) for r in spark.sql("select * from movielens.events").collect())
    assert first == second and len(first) == 5
    history = spark.sql("describe history movielens.events").collect()
    assert history[0].operation == "MERGE"


def test_var_values_reach_sql_only_as_quoted_literals(spark, tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "echo": "select {{ var('label', 'x') }} as label, {{ var('amount', 1) }} as amount",
    })
    settings = with_sql(new_warehouse(), sql)
    hostile = "x'; drop table movielens.echo; --"
    project = sql_project.load_project(settings, cli_vars=rendering.parse_vars(
        [f"label={hostile}", "amount=2.5"]))
    runner.build(spark, project)
    row = spark.sql("select * from movielens.echo").first()
    assert row.label == hostile and row.amount == 2.5
    with pytest.raises(ReelhouseError, match="not a valid var name"):
        rendering.parse_vars(["bad name=1"])


def test_compile_writes_rendered_sql_and_tests_under_target(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"only": "select {{ var('n', 7) }} as n"}, yml="""
models:
  - name: only
    columns:
      - name: n
        description: seven
        data_tests: [not_null]
""", macros="{% macro double(x) %}({{ x }} * 2){% endmacro %}")
    (sql / "models" / "doubled.sql").write_text("select {{ double('n') }} as n "
                                                 "from {{ ref('only') }}")
    settings = with_sql(new_warehouse(), sql)
    written = runner.compile_project(sql_project.load_project(settings))
    compiled = {p.name: p.read_text() for p in written}
    assert compiled["only.sql"].strip() == "select 7 as n"
    assert compiled["doubled.sql"].strip() == "select (n * 2) as n from movielens.only"
    # only's one data test (not_null on n), as the query returning its failing rows.
    [test] = (settings.target_dir / "compiled" / "tests").glob("*.sql")
    assert test.name == "only__00.sql"
    assert "from movielens.only where n is null" in test.read_text()


def test_a_table_whose_inputs_did_not_change_is_not_rebuilt(spark, tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {
        "base": "select id from range({{ var('rows', 3) }})",
        "derived": "select count(*) as n from {{ ref('base_view') }}",
        "base_view": "{{ config(materialized='view') }}\nselect id from {{ ref('base') }}",
    })
    settings = with_sql(new_warehouse(), sql)
    assert set(runner.build(spark, sql_project.load_project(settings))) == {
        "base", "base_view", "derived"}
    version = delta_log.current_version(spark, settings, "derived")
    # Nothing changed: nothing is rebuilt, views included (their tests do not run again).
    assert runner.build(spark, sql_project.load_project(settings)) == []
    assert delta_log.current_version(spark, settings, "derived") == version
    # A changed view changes what derived reads, though no table it reads has a new version.
    (sql / "models" / "base_view.sql").write_text(
        "{{ config(materialized='view') }}\nselect id from {{ ref('base') }} where id > 0")
    assert runner.build(spark, sql_project.load_project(settings)) == ["base_view", "derived"]
    assert spark.sql("select n from movielens.derived").first().n == 2
    (sql / "models" / "base_view.sql").write_text(
        "{{ config(materialized='view') }}\nselect id from {{ ref('base') }}")
    assert runner.build(spark, sql_project.load_project(settings)) == ["base_view", "derived"]
    version = delta_log.current_version(spark, settings, "derived")
    # A changed var changes base's SQL; derived reads base through the view, so it rebuilds too.
    rebuilt = runner.build(spark, sql_project.load_project(settings, cli_vars={"rows": 4}))
    assert rebuilt == ["base", "base_view", "derived"]
    assert spark.sql("select n from movielens.derived").first().n == 4
    assert runner.build(spark, sql_project.load_project(settings), force=True) == [
        "base", "base_view", "derived"]


MANIFEST = """
folders:
  +materialized: table
  models:
    +tags: [build]
    staging:
      +materialized: view
    reports:
      +tags: [evaluate]
vars:
  threshold: 3
"""


def test_the_manifest_gives_folder_defaults_tags_and_var_defaults(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"staging/raw_numbers": "select 1 as n",
                                 "marts/numbers": "select * from {{ ref('raw_numbers') }} "
                                                  "where n < {{ var('threshold') }}",
                                 "reports/numbers_report": "select * from {{ ref('numbers') }}",
                                 "marts/own_view": "{{ config(materialized='view') }}\n"
                                                   "select 2 as n"})
    (sql / "reelhouse_project.yml").write_text(MANIFEST)
    project = sql_project.load_project(with_sql(new_warehouse(), sql))
    models = project.models
    assert models["raw_numbers"].materialized == "view"  # its folder's default
    assert models["numbers"].materialized == "table"  # the root's default
    assert models["own_view"].materialized == "view"  # its own config() wins
    assert models["numbers_report"].tags == {"build", "evaluate"}  # tags add up
    assert project.tagged("evaluate") == ["numbers_report"]
    assert project.select(["tag:evaluate"]) == ["numbers_report"]
    assert rendering.render_query(project, "q", "{{ var('threshold') }}") == "3"
    cli = sql_project.load_project(with_sql(new_warehouse(), sql), cli_vars={"threshold": 7})
    assert rendering.render_query(cli, "q", "{{ var('threshold') }}") == "7"


def test_a_new_test_kind_is_a_macro_and_a_singular_test_is_a_file(spark, tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"numbers": "select id as n from range(5)",
                                 "halves": "select n / 2 as half from {{ ref('numbers') }}"},
                      yml="""
models:
  - name: numbers
    columns:
      - name: n
        data_tests:
          - below: {limit: 3, severity: warn}
""")
    (sql / "tests" / "generic").mkdir(parents=True)
    (sql / "tests" / "generic" / "below.sql").write_text(
        "{% macro test_below(model, column_name, limit) %}"
        "select * from {{ model }} where {{ column_name }} >= {{ literal(limit) }}"
        "{% endmacro %}")
    (sql / "tests" / "halves_are_small.sql").write_text(
        "select * from {{ ref('halves') }} where half > 1")
    settings = with_sql(new_warehouse(), sql)
    project = sql_project.load_project(settings)
    assert [test.name for test in project.singular_tests["halves"]] == ["halves_are_small"]
    runner.build(spark, project, ["numbers"])  # the custom kind fails 2 rows, as a warning
    with pytest.raises(ReelhouseError, match=r"halves_are_small\(halves\) \(2 rows\)"):
        runner.build(spark, project, ["halves"])
    assert not registration.table_exists(spark, settings, "halves")  # nothing was written


def test_a_range_test_without_bounds_and_an_unknown_kind_fail_in_one_sentence(
        tmp_path, new_warehouse):
    for spec, message in (("accepted_range: {}", "needs min_value or max_value"),
                          ("no_such_kind", "there is no macro test_no_such_kind")):
        sql = project_dir(tmp_path / spec[:5], {"numbers": "select 1 as n"}, yml=f"""
models:
  - name: numbers
    columns:
      - name: n
        data_tests: [{spec}]
""")
        project = sql_project.load_project(with_sql(new_warehouse(), sql))
        with pytest.raises(ReelhouseError, match=message):
            runner.compile_project(project)


def test_a_render_error_names_the_models_own_line(tmp_path, new_warehouse):
    sql = project_dir(tmp_path, {"broken": "select 1 as n\n\n{{ oops( }}\n"},
                      macros="{% macro one() %}1{% endmacro %}\n" * 20)
    with pytest.raises(ReelhouseError, match=r"Model broken does not render: .* \(line 3\)"):
        sql_project.load_project(with_sql(new_warehouse(), sql))
