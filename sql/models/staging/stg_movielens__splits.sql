-- One row per line of ml-100k's own split files (u1.base, u1.test .. ub.test), parsed into
-- the split it belongs to (split_name 'u1' .. 'u5', 'ua', 'ub'), its part ('train' for
-- .base, 'test' for .test) and the (user_id, movie_id) pair; the rating and timestamp fields
-- repeat u.data's and are not read. Good rows have a null reject_reason, bad ones say why.

with raw_splits as (
    select
        dataset_format,
        source_file,
        line_number,
        raw_line,
        is_decodable,
        ingested_at
    from {{ source('raw', 'splits') }}
),

fields_named as (
    select
        *,
        size(split(raw_line, '\\t', -1)) as num_fields,
        get(split(raw_line, '\\t', -1), 0) as user_id_text,
        get(split(raw_line, '\\t', -1), 1) as movie_id_text,
        nullif(
            regexp_extract(
                {{ file_name('source_file') }}, '^(u[1-5]|ua|ub)[.](base|test)([.]gz)?$', 1
            ),
            ''
        ) as split_name,
        regexp_extract(
            {{ file_name('source_file') }}, '^(u[1-5]|ua|ub)[.](base|test)([.]gz)?$', 2
        ) as file_part
    from raw_splits
),

parsed as (
    select
        *,
        case file_part when 'base' then 'train' when 'test' then 'test' end as split_part,
        {{ positive_int('user_id_text') }} as user_id,
        {{ positive_int('movie_id_text') }} as movie_id
    from fields_named
)

select
    dataset_format,
    source_file,
    line_number,
    raw_line,
    split_name,
    split_part,
    user_id,
    movie_id,
    -- a pair repeated within one split file is one line too many (rejected_lines)
    concat_ws(':', split_name, split_part, user_id, movie_id) as split_line_key,
    case
        {{ line_problems() }}
        when split_name is null
            then concat('not a GroupLens split file name: ', {{ file_name('source_file') }})
        when num_fields != 4
            then concat('wrong field count: ', num_fields, ' (expected 4)')
        when user_id is null
            then concat('user_id is not a positive integer: ', {{ shown('user_id_text') }})
        when movie_id is null
            then concat('movie_id is not a positive integer: ', {{ shown('movie_id_text') }})
    end as reject_reason,
    ingested_at
from parsed
