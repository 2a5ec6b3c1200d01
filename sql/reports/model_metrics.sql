-- Rating-prediction error of the latest ALS run and of three baselines, one row per model,
-- all scored on the same test rows (test_predictions). error = prediction - rating;
-- rmse = sqrt(mean(error^2)), mae = mean(|error|). ALS's rmse and mae are null for an
-- implicit-feedback run, whose scores are confidences, not ratings.

with test_prediction_errors as (
    select
        run_id,
        model,
        error
    from {{ ref('test_prediction_errors') }}
),

model_runs as (
    select
        run_id,
        coalesce(get_json_object(params, '$.implicit') = 'true', false) as is_implicit
    from {{ source('train', 'model_runs') }}
),

errors_by_model as (
    {{ error_metrics('test_prediction_errors') }}
),

rated_models as (
    select
        errors_by_model.run_id,
        errors_by_model.model,
        errors_by_model.num_predictions,
        if(errors_by_model.model = 'als' and model_runs.is_implicit, null, errors_by_model.rmse)
            as rmse,
        if(errors_by_model.model = 'als' and model_runs.is_implicit, null, errors_by_model.mae)
            as mae,
        if(
            errors_by_model.model = 'als' and model_runs.is_implicit,
            null,
            errors_by_model.mean_error
        ) as mean_error
    from errors_by_model
    left join model_runs on errors_by_model.run_id = model_runs.run_id
),

compared as (
    select
        *,
        1 - try_divide(rmse, max(if(model = 'global_mean', rmse, null)) over (partition by run_id))
            as rmse_improvement_over_global_mean,
        rank() over (partition by run_id order by rmse nulls last) as rmse_rank
    from rated_models
)

select
    run_id,
    model,
    num_predictions,
    rmse,
    mae,
    mean_error,
    rmse_improvement_over_global_mean,
    rmse_rank
from compared
