-- One row per line of the tags file, parsed; reject_reason says why a line is unusable.
-- ml-latest tags.csv `userId,movieId,tag,timestamp` (the tag CSV-quoted when it holds a comma
-- or a quote); ml-10m tags.dat `UserID::MovieID::Tag::Timestamp`. Other formats have no tags.
{%- set csv_pattern = '^([^,]*),([^,]*),("[^"]*(?:""[^"]*)*"|[^",][^,]*|),([^,]*)$' %}
{%- set dat_pattern = '^([^:]*)::([^:]*)::(.*)::([^:]*)$' %}

with raw_tags as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'tags') }}
),

texts as (
    select
        *,
        size(split(raw_line, {{ field_separator('dataset_format') }}, -1)) as num_fields,
        case dataset_format
            when 'ml-latest' then raw_line rlike '{{ csv_pattern }}'
            else raw_line rlike '{{ dat_pattern }}'
        end as is_well_formed,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 1)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 1)
        end as user_id_text,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 2)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 2)
        end as movie_id_text,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 3)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 3)
        end as tag_field,
        case dataset_format
            when 'ml-latest' then regexp_extract(raw_line, '{{ csv_pattern }}', 4)
            else regexp_extract(raw_line, '{{ dat_pattern }}', 4)
        end as timestamp_text
    from raw_tags
),

parsed as (
    select
        *,
        {{ positive_int('user_id_text') }} as user_id,
        {{ positive_int('movie_id_text') }} as movie_id,
        -- a quoted CSV field loses its quotes and has its doubled quotes undoubled
        trim(
            case
                when tag_field like '"%'
                    then replace(substr(tag_field, 2, length(tag_field) - 2), '""', '"')
                else tag_field
            end
        ) as tag,
        {{ unix_seconds_timestamp('timestamp_text') }} as tagged_at
    from texts
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    user_id,
    movie_id,
    nullif(tag, '') as tag,
    tagged_at,
    case
        {{ line_problems() }}
        when not is_well_formed and dataset_format = 'ml-latest'
            then 'malformed CSV line: expected userId,movieId,tag,timestamp'
        when not is_well_formed
            then concat('wrong field count: ', num_fields, ' (expected 4)')
        when user_id is null
            then concat('user_id is not a positive integer: ', {{ shown('user_id_text') }})
        when movie_id is null
            then concat('movie_id is not a positive integer: ', {{ shown('movie_id_text') }})
        when tag = '' then 'tag is empty'
        else {{ unix_seconds_problem('timestamp', 'timestamp_text') }}
    end as reject_reason,
    ingested_at
from parsed
