-- How sparse the user x movie rating matrix is, in one row: users and movies that have at
-- least one rating, the density num_ratings / (num_users * num_movies), and exact quantiles
-- (percentile, not approx_percentile) of ratings per user and per movie.

with ratings as (
    select
        user_id,
        movie_id
    from {{ ref('ratings') }}
),

ratings_per_user as (
    select
        user_id,
        count(*) as num_ratings
    from ratings
    group by user_id
),

ratings_per_movie as (
    select
        movie_id,
        count(*) as num_ratings
    from ratings
    group by movie_id
),

user_quantiles as (
    select
        count(*) as num_users,
        coalesce(sum(num_ratings), 0) as num_ratings,
        avg(num_ratings) as avg_ratings_per_user,
        min(num_ratings) as min_ratings_per_user,
        max(num_ratings) as max_ratings_per_user,
        percentile(num_ratings, array(0.25, 0.5, 0.75, 0.9, 0.99)) as per_user_quantiles
    from ratings_per_user
),

movie_quantiles as (
    select
        count(*) as num_movies,
        avg(num_ratings) as avg_ratings_per_movie,
        min(num_ratings) as min_ratings_per_movie,
        max(num_ratings) as max_ratings_per_movie,
        percentile(num_ratings, array(0.25, 0.5, 0.75, 0.9, 0.99)) as per_movie_quantiles
    from ratings_per_movie
),

matrix_stats as (
    select
        user_quantiles.*,
        movie_quantiles.*,
        try_divide(
            cast(user_quantiles.num_ratings as double),
            cast(user_quantiles.num_users as double) * movie_quantiles.num_movies
        ) as density,
        get(user_quantiles.per_user_quantiles, 0) as p25_ratings_per_user,
        get(user_quantiles.per_user_quantiles, 1) as p50_ratings_per_user,
        get(user_quantiles.per_user_quantiles, 2) as p75_ratings_per_user,
        get(user_quantiles.per_user_quantiles, 3) as p90_ratings_per_user,
        get(user_quantiles.per_user_quantiles, 4) as p99_ratings_per_user,
        get(movie_quantiles.per_movie_quantiles, 0) as p25_ratings_per_movie,
        get(movie_quantiles.per_movie_quantiles, 1) as p50_ratings_per_movie,
        get(movie_quantiles.per_movie_quantiles, 2) as p75_ratings_per_movie,
        get(movie_quantiles.per_movie_quantiles, 3) as p90_ratings_per_movie,
        get(movie_quantiles.per_movie_quantiles, 4) as p99_ratings_per_movie
    from user_quantiles
    cross join movie_quantiles
)

select
    num_users,
    num_movies,
    num_ratings,
    density,
    avg_ratings_per_user,
    min_ratings_per_user,
    p25_ratings_per_user,
    p50_ratings_per_user,
    p75_ratings_per_user,
    p90_ratings_per_user,
    p99_ratings_per_user,
    max_ratings_per_user,
    avg_ratings_per_movie,
    min_ratings_per_movie,
    p25_ratings_per_movie,
    p50_ratings_per_movie,
    p75_ratings_per_movie,
    p90_ratings_per_movie,
    p99_ratings_per_movie,
    max_ratings_per_movie
from matrix_stats
