-- Every ratings line that did not become a row of ratings, with the reason: the lines staging
-- rejected, plus repeated (user, movie) pairs, of which only the latest rating is kept.
-- count(ratings) + count(rejected_ratings) = lines in the ratings file(s).

with rejected_rating_lines as (
    -- kept_source_file and kept_line_number are null on the lines staging rejected, which
    -- int_ratings_ranked does not rank
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
        kept_source_file,
        kept_line_number
    from {{ ref('int_ratings_ranked') }}
    where reject_reason is not null or pair_rank > 1
),

explained as (
    select
        *,
        -- staging's reason, or the line that won the pair
        coalesce(
            reject_reason,
            concat(
                'duplicate of ', {{ file_name('kept_source_file') }}, ':', kept_line_number,
                ' (kept as the latest rating of this user and movie)'
            )
        ) as reason
    from rejected_rating_lines
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
from explained
