{{ config(
    materialized='incremental',
    unique_key=['user_id', 'movie_id'],
    not_matched_by_source_action='delete',
    tblproperties={'delta.enableDeletionVectors': 'true'}
) }}

-- One rating per (user, movie): the good staging rows, and where a pair was rated more than
-- once, only the latest rating (the others are in rejected_ratings). Parsing and ranking
-- happen once, in int_ratings_ranked.
--
-- Incremental: the query below is always the whole clean set (a replaced file can change or
-- remove ratings), MERGEd on (user_id, movie_id): new pairs are inserted, a pair whose values
-- changed is updated, a pair no longer here is deleted, and every other row is left alone.
-- Deletion vectors let the MERGE mark the few changed rows instead of rewriting their files.

with kept_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        movie_id,
        rating,
        rated_at
    from {{ ref('int_ratings_ranked') }}
    where pair_rank = 1
)

select
    user_id,
    movie_id,
    rating,
    rated_at,
    dataset_format,
    source_file,
    line_number
from kept_ratings
