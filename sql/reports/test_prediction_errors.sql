{{ config(materialized='view') }}

-- test_predictions in long form, one row per (test row, model), so every error metric and
-- breakdown groups the same rows the same way: error = prediction - rating.

with test_predictions as (
    select
        run_id,
        user_id,
        movie_id,
        rating,
        als_prediction,
        global_mean_prediction,
        movie_mean_prediction,
        user_movie_bias_prediction,
        user_train_ratings,
        movie_train_ratings
    from {{ ref('test_predictions') }}
),

model_predictions as (
    select
        test_predictions.*,
        predicted.model,
        predicted.prediction,
        predicted.prediction - test_predictions.rating as error
    from test_predictions
        lateral view stack(
            4,
            'als', test_predictions.als_prediction,
            'global_mean', test_predictions.global_mean_prediction,
            'movie_mean', test_predictions.movie_mean_prediction,
            'user_movie_bias', test_predictions.user_movie_bias_prediction
        ) predicted as model, prediction
)

select
    run_id,
    model,
    user_id,
    movie_id,
    rating,
    prediction,
    error,
    user_train_ratings,
    movie_train_ratings
from model_predictions
