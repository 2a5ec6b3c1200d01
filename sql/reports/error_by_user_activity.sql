-- Test error of every model by how active the user was in train: 'few' train ratings
-- (up to var('few_ratings_max', 30)), 'some' (up to var('some_ratings_max', 150)) or 'many'.
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

activity_buckets as (
    select
        bucket_bounds.activity_bucket,
        bucket_bounds.bucket_order,
        bucket_bounds.min_train_ratings,
        bucket_bounds.max_train_ratings
    from (
        values
        ('few', 1, 1, {{ var('few_ratings_max', 30) }}),
        ('some', 2, {{ var('few_ratings_max', 30) }} + 1, {{ var('some_ratings_max', 150) }}),
        ('many', 3, {{ var('some_ratings_max', 150) }} + 1, null)
    ) as bucket_bounds (activity_bucket, bucket_order, min_train_ratings, max_train_ratings)
),

bucketed_errors as (
    -- each test row in its bucket (a range join against three rows, broadcast)
    select
        test_prediction_errors.run_id,
        test_prediction_errors.model,
        activity_buckets.activity_bucket,
        test_prediction_errors.user_id,
        test_prediction_errors.error
    from test_prediction_errors
    inner join activity_buckets
        on
            test_prediction_errors.user_train_ratings >= activity_buckets.min_train_ratings
            and (
                activity_buckets.max_train_ratings is null
                or test_prediction_errors.user_train_ratings <= activity_buckets.max_train_ratings
            )
),

bucket_errors as (
    select
        run_id,
        model,
        activity_bucket,
        count(distinct user_id) as num_users,
        count(*) as num_predictions,
        sqrt(avg(error * error)) as rmse,
        avg(abs(error)) as mae,
        avg(error) as mean_error
    from bucketed_errors
    group by run_id, model, activity_bucket
),

run_models as (
    select distinct
        run_id,
        model
    from bucket_errors
),

bucket_grid as (
    -- every bucket for every model, empty ones included
    select
        run_models.run_id,
        run_models.model,
        activity_buckets.activity_bucket,
        activity_buckets.bucket_order,
        activity_buckets.min_train_ratings,
        activity_buckets.max_train_ratings
    from run_models
    cross join activity_buckets
),

filled_buckets as (
    select
        bucket_grid.run_id,
        bucket_grid.model,
        bucket_grid.activity_bucket,
        bucket_grid.bucket_order,
        bucket_grid.min_train_ratings,
        bucket_grid.max_train_ratings,
        bucket_errors.rmse,
        bucket_errors.mae,
        bucket_errors.mean_error,
        coalesce(bucket_errors.num_users, 0) as num_users,
        coalesce(bucket_errors.num_predictions, 0) as num_predictions
    from bucket_grid
    left join bucket_errors
        on
            bucket_grid.run_id = bucket_errors.run_id
            and bucket_grid.model = bucket_errors.model
            and bucket_grid.activity_bucket = bucket_errors.activity_bucket
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
from filled_buckets
