-- ml-100k's genre list from u.genre: each genre with the index of its flag column in u.item.
-- Empty for the other formats, whose genres are named in movies.genres (see genre_stats).
-- A repeated genre_id keeps the line read last (the others are in rejected_lines).

with staged_genres as (
    select
        dataset_format,
        source_file,
        line_number,
        genre_id,
        genre,
        reject_reason
    from {{ ref('stg_movielens__genres') }}
),

ranked_genres as (
    select
        *,
        row_number() over (
            partition by genre_id order by {{ line_winner_order() }}
        ) as genre_rank
    from staged_genres
    where reject_reason is null
)

select
    genre_id,
    genre,
    dataset_format,
    source_file,
    line_number
from ranked_genres
where genre_rank = 1
