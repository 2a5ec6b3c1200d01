-- Test error of every model by how popular the movie was in train: 'niche' movies (up to
-- var('niche_ratings_max') train ratings), 'mid' (up to var('mid_ratings_max')) or
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

errors_by_popularity as (
    {{ error_metrics(
        'test_prediction_errors', by='popularity_bucket', counting='movie_id',
        ranged_by='movie_train_ratings',
        ranges=[
            ('niche', var('niche_ratings_max')),
            ('mid', var('mid_ratings_max')),
            ('popular', none),
        ],
    ) }}
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
from errors_by_popularity
