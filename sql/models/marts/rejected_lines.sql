-- Every line of the movies, tags, links, users, genres and split files that did not reach
-- its mart, with the reason: the lines staging rejected, plus lines whose key (movie_id,
-- user_id, genre_id, a pair within one split file) repeats, of which only the line read last
-- is kept. Ratings have their own table,
-- rejected_ratings.

with staged_rejects as (
    select
        'movies' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__movies') }}
    where reject_reason is not null
    union all
    select
        'tags' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__tags') }}
    where reject_reason is not null
    union all
    select
        'links' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__links') }}
    where reject_reason is not null
    union all
    select
        'users' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__users') }}
    where reject_reason is not null
    union all
    select
        'genres' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__genres') }}
    where reject_reason is not null
    union all
    select
        'splits' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reject_reason as reason
    from {{ ref('stg_movielens__splits') }}
    where reject_reason is not null
),

duplicate_keys as (
    {{ duplicate_lines('movies', ref('stg_movielens__movies'), 'movie_id') }}
    union all
    {{ duplicate_lines('links', ref('stg_movielens__links'), 'movie_id') }}
    union all
    {{ duplicate_lines('users', ref('stg_movielens__users'), 'user_id') }}
    union all
    {{ duplicate_lines('genres', ref('stg_movielens__genres'), 'genre_id') }}
    union all
    {{ duplicate_lines('splits', ref('stg_movielens__splits'), 'split_line_key') }}
),

all_rejected as (
    select
        file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reason
    from staged_rejects
    union all
    select
        file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        reason
    from duplicate_keys
)

select
    file_kind,
    dataset_format,
    source_file,
    line_number,
    raw_line,
    reason
from all_rejected
