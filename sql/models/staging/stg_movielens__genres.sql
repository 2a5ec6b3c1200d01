-- ml-100k's genre list (u.genre, `genre|index`), one row per line; empty for other formats.
-- u.genre may end with an empty line: it is rejected as 'empty line' like any other.

with raw_genres as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'genres') }}
),

fields_named as (
    select
        *,
        size(split(raw_line, '[|]', -1)) as num_fields,
        trim(get(split(raw_line, '[|]', -1), 0)) as genre_text,
        get(split(raw_line, '[|]', -1), 1) as genre_id_text
    from raw_genres
),

parsed as (
    select
        *,
        case
            when try_cast(trim(genre_id_text) as bigint) between 0 and 2147483647
                then cast(try_cast(trim(genre_id_text) as bigint) as int)
        end as genre_id
    from fields_named
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    genre_id,
    nullif(genre_text, '') as genre,
    case
        {{ line_problems() }}
        when num_fields != 2
            then concat('wrong field count: ', num_fields, ' (expected 2)')
        when genre_text = '' then 'genre name is empty'
        when genre_id is null
            then concat('genre index is not a whole number: ', {{ shown('genre_id_text') }})
    end as reject_reason,
    ingested_at
from parsed
