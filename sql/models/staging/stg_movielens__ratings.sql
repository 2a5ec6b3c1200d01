-- One row per line of the ratings file, parsed: good rows have a null reject_reason, bad
-- ones say why (the first problem found). Formats: ml-latest `userId,movieId,rating,timestamp`,
-- ml-100k u.data TAB-separated, ml-1m/ml-10m `UserID::MovieID::Rating::Timestamp`.

with raw_ratings as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'ratings') }}
),

split_lines as (
    select
        *,
        split(raw_line, {{ field_separator('dataset_format', '\\t') }}, -1) as field_values
    from raw_ratings
),

fields_named as (
    select
        *,
        size(field_values) as num_fields,
        get(field_values, 0) as user_id_text,
        get(field_values, 1) as movie_id_text,
        get(field_values, 2) as rating_text,
        get(field_values, 3) as timestamp_text,
        -- ml-latest and ml-10m rate in half stars 0.5..5.0, ml-100k and ml-1m in whole stars 1..5
        dataset_format in ('ml-latest', 'ml-10m') as is_half_star_scale
    from split_lines
),

parsed as (
    select
        *,
        {{ positive_int('user_id_text') }} as user_id,
        {{ positive_int('movie_id_text') }} as movie_id,
        try_cast(trim(rating_text) as double) as rating_number,
        {{ unix_seconds_timestamp('timestamp_text') }} as rated_at
    from fields_named
),

scale_checked as (
    select
        *,
        case
            when rating_number is null or isnan(rating_number) then false
            when is_half_star_scale
                then
                    rating_number between 0.5 and 5.0
                    and rating_number * 2 = round(rating_number * 2)
            else rating_number between 1 and 5 and rating_number = round(rating_number)
        end as is_rating_on_scale
    from parsed
),

checked as (
    select
        *,
        case when is_rating_on_scale then rating_number end as rating,
        case
            {{ line_problems() }}
            when num_fields != 4
                then concat('wrong field count: ', num_fields, ' (expected 4)')
            when user_id is null
                then concat('user_id is not a positive integer: ', {{ shown('user_id_text') }})
            when movie_id is null
                then concat('movie_id is not a positive integer: ', {{ shown('movie_id_text') }})
            when rating_number is null or isnan(rating_number)
                then concat('rating is not a number: ', {{ shown('rating_text') }})
            when not is_rating_on_scale and is_half_star_scale
                then concat('rating off the 0.5-5.0 half-star scale: ', {{ shown('rating_text') }})
            when not is_rating_on_scale
                then concat('rating off the 1-5 whole-star scale: ', {{ shown('rating_text') }})
            else {{ unix_seconds_problem('timestamp', 'timestamp_text') }}
        end as reject_reason
    from scale_checked
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    user_id,
    movie_id,
    rating,
    rated_at,
    reject_reason,
    ingested_at
from checked
