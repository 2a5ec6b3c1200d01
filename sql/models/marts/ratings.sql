{{ config(materialized='table') }}

-- One rating per (user, movie): the good staging rows, and where a pair was rated more than
-- once, only the latest rating (the others are in rejected_ratings).

with staged_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        movie_id,
        rating,
        rated_at,
        reject_reason
    from {{ ref('stg_movielens__ratings') }}
),

good_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        movie_id,
        rating,
        rated_at
    from staged_ratings
    where reject_reason is null
),

ranked_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        movie_id,
        rating,
        rated_at,
        row_number() over (
            partition by user_id, movie_id order by {{ rating_winner_order() }}
        ) as pair_rank
    from good_ratings
)

select
    user_id,
    movie_id,
    rating,
    rated_at,
    dataset_format,
    source_file,
    line_number
from ranked_ratings
where pair_rank = 1
