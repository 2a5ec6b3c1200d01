{#- Rows whose value is not one of `values` (nulls pass: not_null says whether they may be). -#}
{% macro test_accepted_values(model, column_name, values) -%}
    {%- set quoted = namespace(values=[]) -%}
    {%- for value in values -%}
        {%- set quoted.values = quoted.values + [literal(value)] -%}
    {%- endfor -%}
    select * from {{ model }}
    where {{ column_name }} is not null and {{ column_name }} not in ({{ quoted.values | join(', ') }})
{%- endmacro %}
