{#- Rows outside [min_value, max_value] (bounds excluded with inclusive=false). At least one
    bound is required: a range test with neither would test nothing. -#}
{% macro test_accepted_range(model, column_name, min_value=none, max_value=none,
                             inclusive=true) -%}
    {%- if min_value is none and max_value is none -%}
        {{ raise_compiler_error(
            "accepted_range on " ~ column_name ~ " needs min_value or max_value"
        ) }}
    {%- endif -%}
    {%- set outside = namespace(checks=[]) -%}
    {%- if min_value is not none -%}
        {%- set below = ' < ' if inclusive else ' <= ' -%}
        {%- set outside.checks = outside.checks + [column_name ~ below ~ literal(min_value)] -%}
    {%- endif -%}
    {%- if max_value is not none -%}
        {%- set above = ' > ' if inclusive else ' >= ' -%}
        {%- set outside.checks = outside.checks + [column_name ~ above ~ literal(max_value)] -%}
    {%- endif -%}
    select * from {{ model }} where {{ outside.checks | join(' or ') }}
{%- endmacro %}
