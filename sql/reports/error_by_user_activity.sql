-- Test error of every model by how active the user was in train: 'few' train ratings
-- (up to var('few_ratings_max')), 'some' (up to var('some_ratings_max')) or 'many'.
-- Every bucket has a row per model, with num_predictions 0 and null errors when no test row
-- falls in it.

with test_prediction_errors as (
    select
        run_id,
        model,
        user_id,
        error,
        user_train_ratings
    from {{ ref('test_prediction_errors') }}
),

errors_by_activity as (
    {{ error_metrics(
        'test_prediction_errors', by='activity_bucket', counting='user_id',
        ranged_by='user_train_ratings',
        ranges=[
            ('few', var('few_ratings_max')),
            ('some', var('some_ratings_max')),
            ('many', none),
        ],
    ) }}
)

select
    run_id,
    model,
    activity_bucket,
    bucket_order,
    min_train_ratings,
    max_train_ratings,
    num_users,
    num_predictions,
    rmse,
    mae,
    mean_error
from errors_by_activity
