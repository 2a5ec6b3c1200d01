-- ml-100k's own train/test splits (u1 .. u5, ua, ub), one row per (split_name, split_part,
-- user_id, movie_id): what ratings_split reads for split_method 'grouplens'. Empty for
-- every other layout. A pair repeated within one file keeps the line read last (the others
-- are in rejected_lines).

with staged_splits as (
    select
        source_file,
        line_number,
        split_name,
        split_part,
        user_id,
        movie_id,
        split_line_key,
        reject_reason
    from {{ ref('stg_movielens__splits') }}
),

ranked_lines as (
    select
        *,
        row_number() over (
            partition by split_line_key order by {{ line_winner_order() }}
        ) as line_rank
    from staged_splits
    where reject_reason is null
)

select
    split_name,
    split_part,
    user_id,
    movie_id
from ranked_lines
where line_rank = 1
