{{ config(materialized='view') }}

-- The rating model's estimate for any (user, movie) pair of the latest run, both seen in
-- training: a view over its factors and biases, so nothing is computed until a query filters
-- it. Ask for pairs with a filter, which Spark pushes into both factor tables:
--   select * from movielens.rating_estimates where user_id = 1 and movie_id in (1, 2, 3)
-- For many pairs, join a pairs table to the factor tables as this view does. The estimate is
-- movielens.rating_estimate (udfs/ratings.sql), the function train scores predictions with,
-- so on a test row this view equals predictions.

with model_runs as (
    select
        run_id,
        global_mean,
        rating_scale_min,
        rating_scale_max
    from {{ source('train', 'model_runs') }}
),

user_factors as (
    select
        run_id,
        id as user_id,
        factors,
        bias
    from {{ source('train', 'rating_user_factors') }}
),

movie_factors as (
    select
        id as movie_id,
        factors,
        bias
    from {{ source('train', 'rating_movie_factors') }}
)

select
    user_factors.run_id,
    user_factors.user_id,
    movie_factors.movie_id,
    movielens.rating_estimate(
        model_runs.global_mean,
        user_factors.bias,
        movie_factors.bias,
        user_factors.factors,
        movie_factors.factors,
        model_runs.rating_scale_min,
        model_runs.rating_scale_max
    ) as estimate
from user_factors
inner join model_runs on user_factors.run_id = model_runs.run_id
cross join movie_factors
