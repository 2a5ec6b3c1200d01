{#- var('split_method'): 'random' (default) or 'temporal'; see the comment below. -#}
{%- set split_method = var('split_method', 'random') %}
{%- if split_method not in ('random', 'temporal') %}
    {{- raise_compiler_error(
        "var split_method must be 'random' or 'temporal', got " ~ split_method
    ) }}
{%- endif %}
{{ config(materialized='table') }}

-- ratings, each labelled 'train' or 'test' for offline evaluation. Deterministic: the same
-- ratings and vars give the same split on any cluster layout.
-- split_method 'random': a rating is 'test' when a hash of (user_id, movie_id, split_seed),
--   mapped to [0, 1), is below test_fraction; about test_fraction of ratings, independent of
--   partitioning (no rand()).
-- split_method 'temporal': each user's latest ratings (by rated_at, then movie_id) are 'test',
--   round(n * test_fraction) of a user's n ratings but at most n - 1, so every user keeps at
--   least one training rating (a user with one rating keeps it in train).

with ratings as (
    select
        user_id,
        movie_id,
        rating,
        rated_at
    from {{ ref('ratings') }}
),

ordered_ratings as (
    select
        user_id,
        movie_id,
        rating,
        rated_at,
        {% if split_method == 'temporal' -%}
            row_number() over (
                partition by user_id order by rated_at desc, movie_id desc
            ) as recency_rank,
            count(*) over (partition by user_id) as user_num_ratings
        {%- else -%}
            -- the top 53 bits of a 64-bit hash, as a double in [0, 1)
            cast(
                shiftrightunsigned(xxhash64(user_id, movie_id, {{ var('split_seed', 42) }}), 11)
                as double
            ) / power(2, 53) as split_draw
        {%- endif %}
    from ratings
),

labelled as (
    select
        user_id,
        movie_id,
        rating,
        rated_at,
        {% if split_method == 'temporal' -%}
            case
                when recency_rank <= least(
                    round(user_num_ratings * {{ var('test_fraction', 0.2) }}), user_num_ratings - 1
                ) then 'test'
                else 'train'
            end as split
        {%- else -%}
            case
                when split_draw < {{ var('test_fraction', 0.2) }} then 'test'
                else 'train'
            end as split
        {%- endif %}
    from ordered_ratings
)

select
    user_id,
    movie_id,
    rating,
    rated_at,
    split
from labelled
