-- Test error of every model by how popular the movie was in train: 'niche' movies (up to
-- var('niche_ratings_max', 10) train ratings), 'mid' (up to var('mid_ratings_max', 100)) or
-- 'popular'. Every bucket has a row per model, with num_predictions 0 and null errors when no
-- test row falls in it.

with test_prediction_errors as (
    select
        run_id,
        model,
        movie_id,
        error,
        movie_train_ratings
    from {{ ref('test_prediction_errors') }}
),

popularity_buckets as (
    select
        bucket_bounds.popularity_bucket,
        bucket_bounds.bucket_order,
        bucket_bounds.min_train_ratings,
        bucket_bounds.max_train_ratings
    from (
        values
        ('niche', 1, 1, {{ var('niche_ratings_max', 10) }}),
        ('mid', 2, {{ var('niche_ratings_max', 10) }} + 1, {{ var('mid_ratings_max', 100) }}),
        ('popular', 3, {{ var('mid_ratings_max', 100) }} + 1, null)
    ) as bucket_bounds (popularity_bucket, bucket_order, min_train_ratings, max_train_ratings)
),

bucketed_errors as (
    -- each test row in its bucket (a range join against three rows, broadcast)
    select
        test_prediction_errors.run_id,
        test_prediction_errors.model,
        popularity_buckets.popularity_bucket,
        test_prediction_errors.movie_id,
        test_prediction_errors.error
    from test_prediction_errors
    inner join popularity_buckets
        on
            test_prediction_errors.movie_train_ratings >= popularity_buckets.min_train_ratings
            and (
                popularity_buckets.max_train_ratings is null
                or test_prediction_errors.movie_train_ratings
                <= popularity_buckets.max_train_ratings
            )
),

bucket_errors as (
    select
        run_id,
        model,
        popularity_bucket,
        count(distinct movie_id) as num_movies,
        count(*) as num_predictions,
        sqrt(avg(error * error)) as rmse,
        avg(abs(error)) as mae,
        avg(error) as mean_error
    from bucketed_errors
    group by run_id, model, popularity_bucket
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
        popularity_buckets.popularity_bucket,
        popularity_buckets.bucket_order,
        popularity_buckets.min_train_ratings,
        popularity_buckets.max_train_ratings
    from run_models
    cross join popularity_buckets
),

filled_buckets as (
    select
        bucket_grid.run_id,
        bucket_grid.model,
        bucket_grid.popularity_bucket,
        bucket_grid.bucket_order,
        bucket_grid.min_train_ratings,
        bucket_grid.max_train_ratings,
        bucket_errors.rmse,
        bucket_errors.mae,
        bucket_errors.mean_error,
        coalesce(bucket_errors.num_movies, 0) as num_movies,
        coalesce(bucket_errors.num_predictions, 0) as num_predictions
    from bucket_grid
    left join bucket_errors
        on
            bucket_grid.run_id = bucket_errors.run_id
            and bucket_grid.model = bucket_errors.model
            and bucket_grid.popularity_bucket = bucket_errors.popularity_bucket
)

select
    run_id,
    model,
    popularity_bucket,
    bucket_order,
    min_train_ratings,
    max_train_ratings,
    num_movies,
    num_predictions,
    rmse,
    mae,
    mean_error
from filled_buckets
