-- Every line of the movies, tags, links, users, genres and split files that did not reach
-- its mart, with the reason: the lines staging rejected, plus lines whose key (movie_id,
-- user_id, genre_id, a pair within one split file) repeats, of which only the line read last
-- is kept. Ratings have their own table, rejected_ratings.

{%- set staged_files = ['movies', 'tags', 'links', 'users', 'genres', 'splits'] %}
{#- the files with a key, which only one line may hold -#}
{%- set file_keys = {
    'movies': 'movie_id',
    'links': 'movie_id',
    'users': 'user_id',
    'genres': 'genre_id',
    'splits': 'split_line_key',
} %}

with staged_rejects as (
    {%- for file_kind in staged_files %}
        {%- if not loop.first %}
            union all
        {%- endif %}
        select
            '{{ file_kind }}' as file_kind,
            dataset_format,
            source_file,
            line_number,
            raw_line,
            reject_reason as reason
        from {{ ref('stg_movielens__' ~ file_kind) }}
        where reject_reason is not null
    {%- endfor %}
),

duplicate_keys as (
    {%- for file_kind, key_column in file_keys.items() %}
        {%- if not loop.first %}
            union all
        {%- endif %}
        {{ duplicate_lines(file_kind, ref('stg_movielens__' ~ file_kind), key_column) }}
    {%- endfor %}
),

all_rejected as (
    select * from staged_rejects
    union all
    select * from duplicate_keys
)

select
    file_kind,
    dataset_format,
    source_file,
    line_number,
    raw_line,
    reason
from all_rejected
