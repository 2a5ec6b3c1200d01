-- One row per line of the movies file, parsed; reject_reason says why a line is unusable.
-- ml-latest movies.csv `movieId,title,genres` (the title CSV-quoted when it holds a comma or a
-- quote, quotes doubled inside); ml-100k u.item `id|title|release date|video release date|
-- IMDb URL|19 genre flags`; ml-1m/ml-10m movies.dat `MovieID::Title::Genres`.
{#- movieId, title (quoted with "" inside, or plain), genres. The quoted alternative is an
    unrolled loop, so Java's regex engine does not recurse once per character. -#}
{%- set csv_pattern = '^([^,]*),("[^"]*(?:""[^"]*)*"|[^",][^,]*|),([^,]*)$' %}
{%- set dat_pattern = '^([^:]*)::(.*)::([^:]*)$' %}

with raw_movies as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'movies') }}
),

genre_lookup as (
    -- u.genre's names in flag order; ml-100k's documented list when u.genre is unusable
    select
        case
            when count(*) = 19 and count(distinct genre_id) = 19 and max(genre_id) = 18
                then transform(array_sort(collect_list(struct(genre_id, genre))), g -> g.genre)
            else {{ ml_100k_genres() }}
        end as genre_names
    from {{ ref('stg_movielens__genres') }}
    where reject_reason is null
),

fields_named as (
    select
        raw_movies.*,
        genre_lookup.genre_names,
        split(raw_movies.raw_line, {{ field_separator('raw_movies.dataset_format') }}, -1)
            as field_values,
        case raw_movies.dataset_format
            when 'ml-latest' then raw_movies.raw_line rlike '{{ csv_pattern }}'
            when 'ml-100k' then size(split(raw_movies.raw_line, '[|]', -1)) = 24
            else raw_movies.raw_line rlike '{{ dat_pattern }}'
        end as is_well_formed
    from raw_movies
    cross join genre_lookup
),

texts as (
    select
        *,
        size(field_values) as num_fields,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 1)
            when 'ml-100k' then get(field_values, 0)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 1)
        end as movie_id_text,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 2)
            when 'ml-100k' then get(field_values, 1)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 2)
        end as title_field,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 3)
            when 'ml-1m' then regexp_extract(raw_line, '{{ dat_pattern }}', 3)
            when 'ml-10m' then regexp_extract(raw_line, '{{ dat_pattern }}', 3)
        end as genres_text,
        -- u.item only: dates, IMDb URL and the 19 genre flags
        case when dataset_format = 'ml-100k' then slice(field_values, 6, 19) end as genre_flags,
        case when dataset_format = 'ml-100k' then trim(get(field_values, 2)) end as release_text,
        case when dataset_format = 'ml-100k' then trim(get(field_values, 3)) end as video_text,
        case when dataset_format = 'ml-100k' then trim(get(field_values, 4)) end as imdb_url_text
    from fields_named
),

parsed as (
    select
        *,
        {{ positive_int('movie_id_text') }} as movie_id,
        -- a quoted CSV field loses its quotes and has its doubled quotes undoubled
        case
            when title_field like '"%'
                then replace(substr(title_field, 2, length(title_field) - 2), '""', '"')
            else title_field
        end as raw_title,
        case
            when dataset_format = 'ml-100k'
                then filter(
                    transform(
                        genre_flags,
                        (flag, i) -> case when trim(flag) = '1' then get(genre_names, i) end
                    ),
                    genre_name -> genre_name is not null and genre_name != 'unknown'
                )
            else {{ genre_array('genres_text') }}
        end as genres,
        try_to_date(nullif(release_text, ''), 'dd-MMM-yyyy') as release_date,
        try_to_date(nullif(video_text, ''), 'dd-MMM-yyyy') as video_release_date,
        nullif(imdb_url_text, '') as imdb_url
    from texts
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    movie_id,
    raw_title,
    genres,
    release_date,
    video_release_date,
    imdb_url,
    case
        {{ line_problems() }}
        when not is_well_formed and dataset_format = 'ml-latest'
            then 'malformed CSV line: expected movieId,title,genres (quote a title with a comma)'
        when not is_well_formed and dataset_format = 'ml-100k'
            then concat('wrong field count: ', num_fields, ' (expected 24)')
        when not is_well_formed
            then concat('wrong field count: ', num_fields, ' (expected 3)')
        when movie_id is null
            then concat('movie_id is not a positive integer: ', {{ shown('movie_id_text') }})
        when trim(raw_title) = '' then 'title is empty'
        when exists(genre_flags, flag -> trim(flag) not in ('0', '1'))
            then concat('genre flags are not all 0 or 1: ', array_join(genre_flags, '|'))
    end as reject_reason,
    ingested_at
from parsed
