-- One row per kind of file the last ingest read: how many data lines it had, how many
-- reached their mart (loaded) and how many did not (rejected; see rejected_ratings and
-- rejected_lines). Tested: lines_read = raw_lines (ingest's count matches its table) and
-- loaded + rejected = lines_read (every line is accounted for). reject_share leaves empty lines
-- out of both sides: a blank line (u.genre ends with one) is formatting, not bad data.

{#- each kind of raw file, and the mart its good lines reach -#}
{%- set file_marts = {
    'ratings': 'ratings',
    'movies': 'movies',
    'tags': 'tags',
    'links': 'links',
    'users': 'users',
    'genres': 'genres',
    'splits': 'grouplens_splits',
} %}

with ingest_files as (
    select
        dataset_format,
        file_kind,
        source_file,
        size_bytes,
        lines_read
    from {{ source('raw', 'ingest_files') }}
),

raw_lines as (
    {%- for file_kind in file_marts %}
        {%- if not loop.first %}
            union all
        {%- endif %}
        select
            '{{ file_kind }}' as file_kind,
            count(*) as num_raw_lines
        from {{ source('raw', file_kind) }}
    {%- endfor %}
),

loaded_rows as (
    {%- for file_kind, mart in file_marts.items() %}
        {%- if not loop.first %}
            union all
        {%- endif %}
        select
            '{{ file_kind }}' as file_kind,
            count(*) as num_loaded
        from {{ ref(mart) }}
    {%- endfor %}
),

rejected_rows as (
    select
        'ratings' as file_kind,
        reason
    from {{ ref('rejected_ratings') }}
    union all
    select
        file_kind,
        reason
    from {{ ref('rejected_lines') }}
),

rejected_counts as (
    select
        file_kind,
        count(*) as num_rejected,
        count_if(reason = 'empty line') as num_empty_lines
    from rejected_rows
    group by file_kind
),

files_by_kind as (
    select
        file_kind,
        min(dataset_format) as dataset_format,
        count(*) as num_files,
        sum(size_bytes) as size_bytes,
        sum(lines_read) as lines_read
    from ingest_files
    group by file_kind
),

summary as (
    select
        files_by_kind.*,
        coalesce(raw_lines.num_raw_lines, 0) as raw_lines,
        coalesce(loaded_rows.num_loaded, 0) as loaded,
        coalesce(rejected_counts.num_rejected, 0) as rejected,
        coalesce(rejected_counts.num_empty_lines, 0) as empty_lines
    from files_by_kind
    left join raw_lines on files_by_kind.file_kind = raw_lines.file_kind
    left join loaded_rows on files_by_kind.file_kind = loaded_rows.file_kind
    left join rejected_counts on files_by_kind.file_kind = rejected_counts.file_kind
)

select
    file_kind,
    dataset_format,
    num_files,
    size_bytes,
    lines_read,
    raw_lines,
    loaded,
    rejected,
    empty_lines,
    coalesce(
        try_divide(cast(rejected - empty_lines as double), lines_read - empty_lines), 0.0
    ) as reject_share
from summary
