-- Every model's prediction for each test rating the latest ALS run scored: exactly the rows of
-- predictions (test rows whose user and movie both have train ratings), so ALS and the
-- baselines are compared on the same rows. The baselines learn from the train rows of
-- ratings_split only:
--   global_mean      mu, the mean train rating
--   movie_mean       the movie's mean train rating (undamped)
--   user_movie_bias  mu + b_u + b_i, clipped to the rating scale, with the damped biases
--                    train centres ratings on (macros/biases.sql), damped as the run that
--                    made the predictions was (its rating model's params in model_runs), so
--                    this baseline is exactly the one ALS learnt the residuals of.

with predictions as (
    select
        run_id,
        user_id,
        movie_id,
        rating,
        prediction
    from {{ source('train', 'predictions') }}
),

ratings_split as (
    select
        user_id,
        movie_id,
        rating,
        split
    from {{ ref('ratings_split') }}
),

train_ratings as (
    select
        user_id,
        movie_id,
        rating
    from ratings_split
    where split = 'train'
),

rating_scale as (
    select
        min(rating) as min_rating,
        max(rating) as max_rating
    from ratings_split
),

global_mean as (
    {{ global_mean_rating('train_ratings') }}
),

training_run as (
    -- train replaces predictions whole, so they hold one run: the one whose damping is used
    select
        max(cast(get_json_object(model_runs.params, '$.movie_bias_damping') as double))
            as movie_bias_damping,
        max(cast(get_json_object(model_runs.params, '$.user_bias_damping') as double))
            as user_bias_damping
    from {{ source('train', 'model_runs') }} as model_runs
    where model_runs.run_id in (select predictions.run_id from predictions)
),

baseline_inputs as (
    -- a run recorded without its damping has no baseline to compare with: fail, do not guess
    {%- set no_damping = "raise_error('model_runs records no bias damping for the run in "
        ~ "predictions: run `reelhouse train` again, then `reelhouse evaluate`')" %}
    select
        global_mean.global_mean_rating,
        coalesce(training_run.movie_bias_damping, {{ no_damping }}) as movie_bias_damping,
        coalesce(training_run.user_bias_damping, {{ no_damping }}) as user_bias_damping
    from global_mean
    cross join training_run
),

movie_biases as (
    {{ damped_movie_biases('train_ratings', 'baseline_inputs') }}
),

user_biases as (
    {{ damped_user_biases('train_ratings', 'movie_biases', 'baseline_inputs') }}
),

scored as (
    select
        predictions.run_id,
        predictions.user_id,
        predictions.movie_id,
        predictions.rating,
        predictions.prediction as als_prediction,
        global_mean.global_mean_rating as global_mean_prediction,
        coalesce(movie_biases.movie_mean_rating, global_mean.global_mean_rating)
            as movie_mean_prediction,
        least(
            greatest(
                global_mean.global_mean_rating
                + coalesce(user_biases.user_bias, 0.0)
                + coalesce(movie_biases.movie_bias, 0.0),
                rating_scale.min_rating
            ),
            rating_scale.max_rating
        ) as user_movie_bias_prediction,
        coalesce(user_biases.user_train_ratings, 0) as user_train_ratings,
        coalesce(movie_biases.movie_train_ratings, 0) as movie_train_ratings
    from predictions
    cross join global_mean
    cross join rating_scale
    left join movie_biases on predictions.movie_id = movie_biases.movie_id
    left join user_biases on predictions.user_id = user_biases.user_id
)

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
from scored
