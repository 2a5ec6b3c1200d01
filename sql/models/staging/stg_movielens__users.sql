-- One row per line of the users file, parsed; reject_reason says why a line is unusable.
-- ml-100k u.user `user id|age|gender|occupation|zip code` (exact age, occupation as text);
-- ml-1m users.dat `UserID::Gender::Age::Occupation::Zip-code` (age and occupation as codes,
-- decoded here with the README's tables). ml-latest and ml-10m have no demographics.

with raw_users as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'users') }}
),

split_lines as (
    select
        *,
        split(raw_line, {{ field_separator('dataset_format') }}, -1) as field_values
    from raw_users
),

fields_named as (
    select
        *,
        size(field_values) as num_fields,
        get(field_values, 0) as user_id_text,
        -- ml-1m puts gender before age, ml-100k age before gender
        trim(get(field_values, if(dataset_format = 'ml-1m', 2, 1))) as age_text,
        upper(trim(get(field_values, if(dataset_format = 'ml-1m', 1, 2)))) as gender_text,
        trim(get(field_values, 3)) as occupation_text,
        trim(get(field_values, 4)) as zip_code_text
    from split_lines
),

parsed as (
    select
        *,
        {{ positive_int('user_id_text') }} as user_id,
        try_cast(age_text as int) as age_number,
        case
            when dataset_format = 'ml-1m' then try_cast(occupation_text as int)
        end as occupation_id
    from fields_named
),

decoded as (
    select
        *,
        case
            when dataset_format = 'ml-1m' and age_number in (1, 18, 25, 35, 45, 50, 56)
                then age_number
            when dataset_format = 'ml-100k' and age_number between 1 and 120 then age_number
        end as age,
        case
            when dataset_format = 'ml-1m' and occupation_id between 0 and 20
                then get({{ ml_1m_occupations() }}, occupation_id)
            when dataset_format = 'ml-100k' then nullif(occupation_text, '')
        end as occupation
    from parsed
),

checked as (
    select
        *,
        case
            {{ line_problems() }}
            when dataset_format not in ('ml-100k', 'ml-1m')
                then concat('users files exist only in ml-100k and ml-1m, not ', dataset_format)
            when num_fields != 5
                then concat('wrong field count: ', num_fields, ' (expected 5)')
            when user_id is null
                then concat('user_id is not a positive integer: ', {{ shown('user_id_text') }})
            when gender_text not in ('M', 'F')
                then concat('gender is not M or F: ', {{ shown('gender_text') }})
            when age is null and dataset_format = 'ml-1m'
                then concat(
                    'age is not an ml-1m age code (1, 18, 25, 35, 45, 50, 56): ',
                    {{ shown('age_text') }}
                )
            when age is null
                then concat('age is not a whole number from 1 to 120: ', {{ shown('age_text') }})
            when occupation is null and dataset_format = 'ml-1m'
                then concat(
                    'occupation is not an ml-1m occupation code (0-20): ',
                    {{ shown('occupation_text') }}
                )
            when occupation is null then 'occupation is empty'
        end as reject_reason
    from decoded
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    user_id,
    case when gender_text in ('M', 'F') then gender_text end as gender,
    age,
    {{ age_group('age') }} as age_group,
    occupation_id,
    occupation,
    nullif(zip_code_text, '') as zip_code,
    reject_reason,
    ingested_at
from checked
