{{ config(
    materialized='incremental',
    unique_key=['user_id', 'movie_id'],
    not_matched_by_source_action='delete',
    tblproperties={'delta.enableDeletionVectors': 'true'}
) }}

-- One rating per (user, movie): the good staging rows, and where a pair was rated more than
-- once, only the latest rating (the others are in rejected_ratings).
--
-- Incremental: the query below is always the whole clean set (a replaced file can change or
-- remove ratings), MERGEd on (user_id, movie_id): new pairs are inserted, a pair whose values
-- changed is updated, a pair no longer here is deleted, and every other row is left alone.
-- Deletion vectors let the MERGE mark the few changed rows instead of rewriting their files.

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
