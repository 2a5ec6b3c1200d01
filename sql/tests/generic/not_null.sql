{#- Generic data tests (after dbt's): each macro returns the rows that fail, zero rows is a
    pass. A YAML test `kind: {args}` calls test_<kind>(model, column_name, args...): `model`
    is the relation under test (the rows about to be written), `column_name` the column the
    test is declared on (none for a model-level test). Values are quoted with literal(). -#}
{% macro test_not_null(model, column_name) -%}
    select * from {{ model }} where {{ column_name }} is null
{%- endmacro %}
