-- One row per line of ml-latest's links.csv `movieId,imdbId,tmdbId`, parsed; reject_reason
-- says why a line is unusable. imdbId is zero-padded to 7 digits; tmdbId may be empty.
-- Other formats have no links file (ml-100k keeps an IMDb URL in u.item instead).

with raw_links as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'links') }}
),

fields_named as (
    select
        *,
        size(split(raw_line, ',', -1)) as num_fields,
        get(split(raw_line, ',', -1), 0) as movie_id_text,
        get(split(raw_line, ',', -1), 1) as imdb_id_text,
        get(split(raw_line, ',', -1), 2) as tmdb_id_text
    from raw_links
),

parsed as (
    select
        *,
        {{ positive_int('movie_id_text') }} as movie_id,
        {{ positive_int('imdb_id_text') }} as imdb_id,
        {{ positive_int('tmdb_id_text') }} as tmdb_id
    from fields_named
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    movie_id,
    imdb_id,
    tmdb_id,
    -- IMDb ids are 'tt' and at least 7 digits
    case
        when imdb_id is not null then format_string('https://www.imdb.com/title/tt%07d', imdb_id)
    end as imdb_url,
    concat('https://www.themoviedb.org/movie/', cast(tmdb_id as string)) as tmdb_url,
    case
        {{ line_problems() }}
        when dataset_format != 'ml-latest'
            then concat('links files exist only in ml-latest, not ', dataset_format)
        when num_fields != 3
            then concat('wrong field count: ', num_fields, ' (expected 3)')
        when movie_id is null
            then concat('movie_id is not a positive integer: ', {{ shown('movie_id_text') }})
        when imdb_id is null
            then concat('imdb_id is not a positive integer: ', {{ shown('imdb_id_text') }})
        when tmdb_id is null and trim(tmdb_id_text) != ''
            then concat('tmdb_id is not a positive integer: ', {{ shown('tmdb_id_text') }})
    end as reject_reason,
    ingested_at
from parsed
