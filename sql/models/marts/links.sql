-- External ids per movie (ml-latest's links.csv): IMDb and TMDB ids and URLs. One row per
-- movie_id; a repeated movie_id keeps the line read last (the others are in rejected_lines).

with staged_links as (
    select
        dataset_format,
        source_file,
        line_number,
        movie_id,
        imdb_id,
        tmdb_id,
        imdb_url,
        tmdb_url,
        reject_reason
    from {{ ref('stg_movielens__links') }}
),

ranked_links as (
    select
        *,
        row_number() over (
            partition by movie_id order by {{ line_winner_order() }}
        ) as movie_rank
    from staged_links
    where reject_reason is null
)

select
    movie_id,
    imdb_id,
    tmdb_id,
    imdb_url,
    tmdb_url,
    dataset_format,
    source_file,
    line_number
from ranked_links
where movie_rank = 1
