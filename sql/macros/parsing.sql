{#- Parsing helpers for the staging models: untrusted text is only ever parsed with try_*
    functions (Spark runs in ANSI mode, where a plain cast of bad text fails the query). -#}

{#- The column separator of a MovieLens data line, as a regular expression, for a format:
    ml-latest CSV ',', ml-100k '|' (u.item, u.user, u.genre) or TAB (u.data), ml-1m/ml-10m
    '::'. ml-100k's ratings file u.data is the exception: pass ml_100k_separator='\\t'. -#}
{% macro field_separator(format_column, ml_100k_separator='[|]') -%}
    case {{ format_column }}
        when 'ml-latest' then ','
        when 'ml-100k' then '{{ ml_100k_separator }}'
        else '::'
    end
{%- endmacro %}

{#- A positive int id from text, or null: digits only (a sign or surrounding spaces are
    tolerated), 1 .. 2147483647. -#}
{% macro positive_int(text) -%}
    case
        when try_cast(trim({{ text }}) as bigint) between 1 and 2147483647
            then cast(try_cast(trim({{ text }}) as bigint) as int)
    end
{%- endmacro %}

{#- A timestamp from whole unix seconds as text, or null: 0 .. 253402300799
    (9999-12-31 23:59:59 UTC, the last second Spark's timestamp_seconds accepts safely). -#}
{% macro unix_seconds_timestamp(text) -%}
    case
        when try_cast(trim({{ text }}) as bigint) between 0 and 253402300799
            then timestamp_seconds(try_cast(trim({{ text }}) as bigint))
    end
{%- endmacro %}

{#- Why unix-seconds text did not parse, or null when it did. -#}
{% macro unix_seconds_problem(name, text) -%}
    case
        when try_cast(trim({{ text }}) as bigint) is null
            then concat('{{ name }} is not whole unix seconds: ', {{ shown(text) }})
        when try_cast(trim({{ text }}) as bigint) < 0
            then concat('{{ name }} is negative: ', {{ shown(text) }})
        when try_cast(trim({{ text }}) as bigint) > 253402300799
            then concat('{{ name }} is after the year 9999: ', {{ shown(text) }})
    end
{%- endmacro %}

{#- A field as it appears in a reject reason: trimmed, at most 40 characters, '(empty)'
    for an empty or missing field. -#}
{% macro shown(text) -%}
    coalesce(nullif(left(trim({{ text }}), 40), ''), '(empty)')
{%- endmacro %}

{#- True when a line holds nothing but whitespace (or is null). -#}
{% macro is_blank(line) -%}
    (coalesce(trim({{ line }}), '') = '')
{%- endmacro %}

{#- The reasons every raw line can fail for, whatever its file: to be the first branches of
    a staging model's reject_reason case expression. -#}
{% macro line_problems(
    line='raw_line', decodable='is_decodable', format_column='dataset_format'
) -%}
    when not coalesce({{ decodable }}, false)
        then 'undecodable bytes: the line is not valid in its file''s encoding'
    when {{ is_blank(line) }} then 'empty line'
    when {{ format_column }} is null
        or {{ format_column }} not in ('ml-latest', 'ml-100k', 'ml-1m', 'ml-10m')
        then concat('unknown dataset format: ', {{ shown(format_column) }})
{%- endmacro %}

{#- The file name of a source file path ('/data/ml-latest/ratings.csv' -> 'ratings.csv'),
    for short reasons such as 'duplicate of ratings.csv:12'. -#}
{% macro file_name(path) -%}
    regexp_extract({{ path }}, '[^/]*$', 0)
{%- endmacro %}

{#- Genres from MovieLens' '|'-joined list as an array, without the markers for no genre:
    'Adventure|Children' -> [Adventure, Children]; '(no genres listed)' (ml-latest) and
    'unknown' (ml-100k) -> []. -#}
{% macro genre_array(text) -%}
    filter(
        transform(split(coalesce({{ text }}, ''), '[|]'), genre_name -> trim(genre_name)),
        genre_name -> genre_name not in ('', '(no genres listed)', 'unknown')
    )
{%- endmacro %}

{#- ml-100k's genres in the order of u.item's 19 flag columns, as its README documents them
    (used when u.genre is missing or does not list exactly 19 genres). -#}
{% macro ml_100k_genres() -%}
    array(
        'unknown', 'Action', 'Adventure', 'Animation', 'Children''s', 'Comedy', 'Crime',
        'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror', 'Musical', 'Mystery',
        'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western'
    )
{%- endmacro %}

{#- ml-1m's occupation codes 0..20 (README), as labels: element i is code i. -#}
{% macro ml_1m_occupations() -%}
    array(
        'other or not specified', 'academic/educator', 'artist', 'clerical/admin',
        'college/grad student', 'customer service', 'doctor/health care',
        'executive/managerial', 'farmer', 'homemaker', 'K-12 student', 'lawyer', 'programmer',
        'retired', 'sales/marketing', 'scientist', 'self-employed', 'technician/engineer',
        'tradesman/craftsman', 'unemployed', 'writer'
    )
{%- endmacro %}

{#- ml-1m's age group label for an age: its codes (1, 18, 25, 35, 45, 50, 56) are the lower
    bounds of the groups, so an exact age (ml-100k) maps to the same labels. -#}
{% macro age_group(age) -%}
    case
        when {{ age }} is null then null
        when {{ age }} < 18 then 'Under 18'
        when {{ age }} < 25 then '18-24'
        when {{ age }} < 35 then '25-34'
        when {{ age }} < 45 then '35-44'
        when {{ age }} < 50 then '45-49'
        when {{ age }} < 56 then '50-55'
        else '56+'
    end
{%- endmacro %}
