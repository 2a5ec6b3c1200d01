-- The movie catalogue: one row per movie_id from the movies file, with a readable title,
-- its year and genres. A repeated movie_id keeps the line read last (the others are in
-- rejected_lines). IMDb/TMDB ids are in links (1:1 on movie_id); ml-100k's u.item carries an
-- IMDb URL itself, kept here.

with staged_movies as (
    select
        dataset_format,
        source_file,
        line_number,
        movie_id,
        raw_title,
        genres,
        release_date,
        video_release_date,
        imdb_url,
        reject_reason
    from {{ ref('stg_movielens__movies') }}
),

ranked_movies as (
    select
        *,
        row_number() over (
            partition by movie_id order by {{ line_winner_order() }}
        ) as movie_rank
    from staged_movies
    where reject_reason is null
),

titled_movies as (
    select
        *,
        coalesce(movielens.clean_title(raw_title), trim(raw_title)) as title,
        -- ml-100k titles nearly all carry the year; its release date fills the rest
        coalesce(movielens.title_year(raw_title), year(release_date)) as year,  -- noqa: RF04
        size(genres) as num_genres
    from ranked_movies
    where movie_rank = 1
)

select
    movie_id,
    title,
    year,  -- noqa: RF04
    genres,
    num_genres,
    raw_title,
    release_date,
    video_release_date,
    imdb_url,
    dataset_format,
    source_file,
    line_number
from titled_movies
