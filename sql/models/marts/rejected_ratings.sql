-- Every ratings line that did not become a row of ratings, with the reason: the lines staging
-- rejected, plus repeated (user, movie) pairs, of which only the latest rating is kept.
-- count(ratings) + count(rejected_ratings) = lines in the ratings file(s).

with ranked_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        user_id,
        movie_id,
        rating,
        rated_at,
        reject_reason,
        pair_rank,
        kept_source_file,
        kept_line_number
    from {{ ref('int_ratings_ranked') }}
    where reject_reason is not null or pair_rank > 1
),

unparsable_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        user_id,
        movie_id,
        rating,
        rated_at,
        reject_reason as reason,
        cast(null as string) as kept_source_file,
        cast(null as bigint) as kept_line_number
    from ranked_ratings
    where reject_reason is not null
),

duplicate_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        user_id,
        movie_id,
        rating,
        rated_at,
        concat(
            'duplicate of ', {{ file_name('kept_source_file') }}, ':', kept_line_number,
            ' (kept as the latest rating of this user and movie)'
        ) as reason,
        kept_source_file,
        kept_line_number
    from ranked_ratings
    where pair_rank > 1
),

all_rejected as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reason,
        user_id,
        movie_id,
        rating,
        rated_at,
        kept_source_file,
        kept_line_number
    from unparsable_ratings
    union all
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reason,
        user_id,
        movie_id,
        rating,
        rated_at,
        kept_source_file,
        kept_line_number
    from duplicate_ratings
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    reason,
    user_id,
    movie_id,
    rating,
    rated_at,
    kept_source_file,
    kept_line_number
from all_rejected
