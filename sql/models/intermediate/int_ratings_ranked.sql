-- Every staged ratings line once, parsed and ranked: the one place the raw ratings are
-- parsed and deduplicated, read by both ratings (the winners) and rejected_ratings (the rest),
-- which would otherwise each parse and rank every raw line (the largest cost of a build at
-- 1M ratings and above). pair_rank is 1 for the line kept for its (user, movie) pair (see
-- rating_winner_order), > 1 for the lines it beat, and null for lines staging rejected.
-- raw_line is kept only for the lines that end in rejected_ratings: the winners do not need
-- it, and they are nearly every row.

with staged_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        user_id,
        movie_id,
        rating,
        rated_at,
        reject_reason
    from {{ ref('stg_movielens__ratings') }}
),

ranked_ratings as (
    select
        *,
        case
            when reject_reason is null
                then row_number() over pair_latest_first
        end as pair_rank,
        case
            when reject_reason is null
                then first_value(source_file) over pair_latest_first
        end as kept_source_file,
        case
            when reject_reason is null
                then first_value(line_number) over pair_latest_first
        end as kept_line_number
    from staged_ratings
    window pair_latest_first as (
        -- rejected lines are ranked apart from good ones, so they never outrank a good line;
        -- their rank is dropped above
        partition by reject_reason is not null, user_id, movie_id
        order by {{ rating_winner_order() }}
    )
)

select
    dataset_format,
    source_file,
    line_number,
    user_id,
    movie_id,
    rating,
    rated_at,
    reject_reason,
    pair_rank,
    kept_source_file,
    kept_line_number,
    case when pair_rank = 1 then null else raw_line end as raw_line
from ranked_ratings
