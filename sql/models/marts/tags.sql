-- Free-text tags users put on movies (ml-latest tags.csv, ml-10m tags.dat): every good line.
-- A user may tag the same movie with the same tag more than once; each line is kept, keyed
-- by its source line.

with staged_tags as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        movie_id,
        tag,
        tagged_at,
        reject_reason
    from {{ ref('stg_movielens__tags') }}
),

good_tags as (
    select
        *,
        lower(tag) as tag_normalized
    from staged_tags
    where reject_reason is null
)

select
    user_id,
    movie_id,
    tag,
    tag_normalized,
    tagged_at,
    dataset_format,
    source_file,
    line_number
from good_tags
