-- Every model's prediction for each test rating the latest ALS run scored: exactly the rows of
-- predictions (test rows whose user and movie both have train ratings), so ALS and the
-- baselines are compared on the same rows. The baselines learn from the train rows of
-- ratings_split only:
--   global_mean      mu, the mean train rating
--   movie_mean       the movie's mean train rating (undamped)
--   user_movie_bias  mu + b_u + b_i, clipped to the rating scale, with damped biases
--                    b_i = sum(r - mu) / (n_i + var('movie_bias_damping', 10))
--                    b_u = sum(r - mu - b_i) / (n_u + var('user_bias_damping', 5))
--                    (the movie biases first, the user biases on what they leave, as train
--                    centres ratings before ALS).

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
    select avg(rating) as global_mean_rating
    from train_ratings
),

movie_biases as (
    select
        train_ratings.movie_id,
        count(*) as movie_train_ratings,
        avg(train_ratings.rating) as movie_mean_rating,
        sum(train_ratings.rating - global_mean.global_mean_rating)
        / (count(*) + {{ var('movie_bias_damping', 10.0) }}) as movie_bias
    from train_ratings
    cross join global_mean
    group by train_ratings.movie_id
),

user_biases as (
    select
        train_ratings.user_id,
        count(*) as user_train_ratings,
        sum(train_ratings.rating - global_mean.global_mean_rating - movie_biases.movie_bias)
        / (count(*) + {{ var('user_bias_damping', 5.0) }}) as user_bias
    from train_ratings
    inner join movie_biases on train_ratings.movie_id = movie_biases.movie_id
    cross join global_mean
    group by train_ratings.user_id
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
