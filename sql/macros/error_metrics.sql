{#- Rating-prediction error statistics of every model: the one computation behind
    model_metrics and the error_by_* reports, so every report scores the same rows the same
    way. error = prediction - rating; rmse = sqrt(mean(error^2)), mae = mean(|error|),
    mean_error = mean(error).
    errors: a relation of (run_id, model, error, ...), one row per prediction.
    Returns one row per (run_id, model) with num_predictions, rmse, mae, mean_error; with
    `by`, one row per (run_id, model, <by>), with `num_<entity>s` (the distinct values of
    `counting`, e.g. 'movie_id' -> num_movies) before num_predictions.
    With `ranges`, the bucket is not a column of errors but a range of its `ranged_by` count:
    ranges lists (bucket, max) pairs in order, the last max none (open ended); bucket i holds
    counts from the previous max + 1 (1 for the first) to its max. Every bucket then has a row
    for every (run, model), with bucket_order, min_train_ratings and max_train_ratings after
    the bucket, num_predictions 0 and null errors when no row falls in it. -#}
{% macro error_metrics(errors, by=none, counting=none, ranged_by=none, ranges=none) -%}
    {%- set num_counted = 'num_' ~ (counting | replace('_id', 's')) if counting else none %}
    {%- set bucket_keys = ['run_id', 'model'] + ([by] if by else []) %}
    {%- set statistics -%}
    select
        {{ bucket_keys | join(',\n        ') }},
        {%- if counting %}
        count(distinct {{ counting }}) as {{ num_counted }},
        {%- endif %}
        count(*) as num_predictions,
        sqrt(avg(error * error)) as rmse,
        avg(abs(error)) as mae,
        avg(error) as mean_error
    from {{ 'bucketed_errors' if ranges else errors }}
    group by {{ bucket_keys | join(', ') }}
    {%- endset %}
    {%- if not ranges -%}
    {{ statistics }}
    {%- else -%}
with bucket_ranges as (
    select *
    from (
        values
        {%- for bucket, max_count in ranges %}
            {%- set min_count = 1 if loop.first else ranges[loop.index0 - 1][1] ~ ' + 1' %}
            {%- set max_count = 'null' if max_count is none else max_count %}
        ('{{ bucket }}', {{ loop.index }}, {{ min_count }}, {{ max_count }})
            {{- ',' if not loop.last }}
        {%- endfor %}
    ) as bucket_bounds ({{ by }}, bucket_order, min_train_ratings, max_train_ratings)
),

bucketed_errors as (
    -- each row in its bucket (a range join against a few rows, broadcast)
    select
        errors.run_id,
        errors.model,
        bucket_ranges.{{ by }},
        errors.{{ counting }},
        errors.error
    from {{ errors }} as errors
    inner join bucket_ranges
        on
            errors.{{ ranged_by }} >= bucket_ranges.min_train_ratings
            and (
                bucket_ranges.max_train_ratings is null
                or errors.{{ ranged_by }} <= bucket_ranges.max_train_ratings
            )
),

bucket_errors as (
    {{ statistics }}
),

bucket_grid as (
    -- every bucket for every model, empty ones included
    select
        run_models.run_id,
        run_models.model,
        bucket_ranges.*
    from (select distinct run_id, model from bucket_errors) as run_models
    cross join bucket_ranges
)

select
    bucket_grid.run_id,
    bucket_grid.model,
    bucket_grid.{{ by }},
    bucket_grid.bucket_order,
    bucket_grid.min_train_ratings,
    bucket_grid.max_train_ratings,
    coalesce(bucket_errors.{{ num_counted }}, 0) as {{ num_counted }},
    coalesce(bucket_errors.num_predictions, 0) as num_predictions,
    bucket_errors.rmse,
    bucket_errors.mae,
    bucket_errors.mean_error
from bucket_grid
left join bucket_errors
    on
        bucket_grid.run_id = bucket_errors.run_id
        and bucket_grid.model = bucket_errors.model
        and bucket_grid.{{ by }} = bucket_errors.{{ by }}
    {%- endif %}
{%- endmacro %}
