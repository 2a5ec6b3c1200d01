{#- Rows whose key (the column, or `columns` together) occurs more than once. -#}
{% macro test_unique(model, column_name=none, columns=none) -%}
    {%- set keys = (columns or [column_name]) | join(', ') -%}
    select {{ keys }}, count(*) as num_rows
    from {{ model }}
    group by {{ keys }}
    having count(*) > 1
{%- endmacro %}
