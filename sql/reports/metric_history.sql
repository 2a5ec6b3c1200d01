{{ config(materialized='incremental', unique_key=['run_id', 'model']) }}

-- Metrics of every training run over time, one row per (run, model). An incremental model:
-- each evaluation merges the latest run's rows (every model of model_metrics, with the
-- ranking metrics at the largest k of ranking_metrics, relevance 'any'), so the baselines and
-- ranking metrics of a run stay here after later runs replace predictions and
-- recommendations. Runs never
-- evaluated get one 'als' row with the test error train recorded in model_runs, and a row
-- written by an earlier evaluation is never overwritten by that thinner one.

with model_runs as (
    select
        run_id,
        finished_at,
        params,
        train_rows,
        prediction_rows,
        rmse,
        mae
    from {{ source('train', 'model_runs') }}
),

model_metrics as (
    select
        run_id,
        model,
        num_predictions,
        rmse,
        mae
    from {{ ref('model_metrics') }}
),

ranking_metrics as (
    select
        run_id,
        model,
        k,
        precision_at_k,
        recall_at_k,
        ndcg_at_k,
        map_at_k,
        hit_rate,
        catalog_coverage,
        mean_popularity,
        relevance_threshold,
        max(k) over (partition by run_id, model) as largest_k
    from {{ ref('ranking_metrics') }}
    where relevance = 'any'  -- the standard protocol
),

largest_k_ranking as (
    select *
    from ranking_metrics
    where k = largest_k
),

evaluated as (
    select
        model_metrics.num_predictions,
        model_metrics.rmse,
        model_metrics.mae,
        largest_k_ranking.k,
        largest_k_ranking.precision_at_k,
        largest_k_ranking.recall_at_k,
        largest_k_ranking.ndcg_at_k,
        largest_k_ranking.map_at_k,
        largest_k_ranking.hit_rate,
        largest_k_ranking.catalog_coverage,
        largest_k_ranking.mean_popularity,
        largest_k_ranking.relevance_threshold,
        'evaluate' as recorded_by,
        coalesce(model_metrics.run_id, largest_k_ranking.run_id) as run_id,
        coalesce(model_metrics.model, largest_k_ranking.model) as model  -- noqa: RF04
    from model_metrics
    full outer join largest_k_ranking
        on
            model_metrics.run_id = largest_k_ranking.run_id
            and model_metrics.model = largest_k_ranking.model
),

{% if is_incremental() -%}
    recorded_runs as (
        select distinct run_id
        from {{ this }}
    ),
{%- endif %}

trained as (
    -- evaluated's columns in evaluated's order: the union below pairs them by position
    select
        model_runs.prediction_rows as num_predictions,
        model_runs.rmse,
        model_runs.mae,
        cast(null as int) as k,
        cast(null as double) as precision_at_k,
        cast(null as double) as recall_at_k,
        cast(null as double) as ndcg_at_k,
        cast(null as double) as map_at_k,
        cast(null as double) as hit_rate,
        cast(null as double) as catalog_coverage,
        cast(null as double) as mean_popularity,
        cast(null as double) as relevance_threshold,
        'train' as recorded_by,
        model_runs.run_id,
        'als' as model  -- noqa: RF04
    from model_runs
    left anti join evaluated on model_runs.run_id = evaluated.run_id
    {%- if is_incremental() %}
        left anti join recorded_runs on model_runs.run_id = recorded_runs.run_id
    {%- endif %}
),

history as (
    select * from evaluated
    union all
    select * from trained
),

history_with_runs as (
    select
        history.*,
        model_runs.finished_at,
        model_runs.train_rows,
        model_runs.params,
        try_cast(get_json_object(model_runs.params, '$.rank') as int) as als_rank,
        try_cast(get_json_object(model_runs.params, '$.reg_param') as double) as als_reg_param,
        try_cast(get_json_object(model_runs.params, '$.max_iter') as int) as als_max_iter
    from history
    left join model_runs on history.run_id = model_runs.run_id
)

select
    run_id,
    model,
    finished_at,
    als_rank,
    als_reg_param,
    als_max_iter,
    train_rows,
    num_predictions,
    rmse,
    mae,
    k,
    precision_at_k,
    recall_at_k,
    ndcg_at_k,
    map_at_k,
    hit_rate,
    catalog_coverage,
    mean_popularity,
    relevance_threshold,
    recorded_by,
    params
from history_with_runs
