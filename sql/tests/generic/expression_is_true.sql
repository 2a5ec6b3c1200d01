{#- Rows for which the boolean `expression` is false or null (var() in it is rendered first,
    so a threshold can come from the command line). -#}
{% macro test_expression_is_true(model, expression, column_name=none) -%}
    select * from {{ model }} where not coalesce(({{ expression }}), false)
{%- endmacro %}
