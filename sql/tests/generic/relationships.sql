{#- Rows whose column has no match in `field` of the relation `to` (ref() or source()). -#}
{% macro test_relationships(model, column_name, to, field) -%}
    select child.* from {{ model }} as child
    left anti join {{ to }} as parent on child.{{ column_name }} = parent.{{ field }}
    where child.{{ column_name }} is not null
{%- endmacro %}
