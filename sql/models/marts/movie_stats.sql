-- One row per movie: in the movies file or rated (a full outer join, so a movie nobody rated
-- shows num_ratings 0, and a rated movie missing from the movies file still shows, with a
-- null title). bayesian_avg shrinks a movie's mean toward the global mean:
--   (C * m + sum of its ratings) / (C + num_ratings)
-- with m the mean of all ratings and C = var('bayesian_prior_weight'): as if every movie
-- had C extra ratings at the global mean. A fixed C keeps the score comparable across runs
-- and easy to explain; pass a larger C (e.g. the median ratings per movie, see sparsity) for
-- a more conservative top list.

with ratings as (
    select
        movie_id,
        rating,
        rated_at
    from {{ ref('ratings') }}
),

movies as (
    select
        movie_id,
        title,
        year,
        genres
    from {{ ref('movies') }}
),

global_stats as (
    select
        avg(rating) as global_mean_rating,
        cast({{ var('bayesian_prior_weight') }} as double) as prior_weight
    from ratings
),

movie_ratings as (
    select
        movie_id,
        count(*) as num_ratings,
        sum(rating) as sum_rating,
        avg(rating) as avg_rating,
        stddev_samp(rating) as stddev_rating,
        percentile(rating, 0.5) as median_rating,
        min(rating) as min_rating,
        max(rating) as max_rating,
        count_if(rating = 5) / count(*) as share_of_5_star,
        count_if(rating >= 4) / count(*) as share_of_4_plus,
        count_if(rating <= 2) / count(*) as share_of_2_or_less,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at
    from ratings
    group by movie_id
),

movies_and_ratings as (
    select
        movies.title,
        movies.year,
        movies.genres,
        movie_ratings.avg_rating,
        movie_ratings.stddev_rating,
        movie_ratings.median_rating,
        movie_ratings.min_rating,
        movie_ratings.max_rating,
        movie_ratings.share_of_5_star,
        movie_ratings.share_of_4_plus,
        movie_ratings.share_of_2_or_less,
        movie_ratings.first_rated_at,
        movie_ratings.last_rated_at,
        coalesce(movies.movie_id, movie_ratings.movie_id) as movie_id,
        movies.movie_id is not null as is_in_movies_file,
        coalesce(movie_ratings.num_ratings, 0) as num_ratings,
        coalesce(movie_ratings.sum_rating, 0) as sum_rating
    from movies
    full outer join movie_ratings on movies.movie_id = movie_ratings.movie_id
),

scored as (
    select
        movies_and_ratings.*,
        try_divide(
            global_stats.prior_weight * global_stats.global_mean_rating
            + movies_and_ratings.sum_rating,
            global_stats.prior_weight + movies_and_ratings.num_ratings
        ) as bayesian_avg
    from movies_and_ratings
    cross join global_stats
),

ranked as (
    select
        *,
        rank() over (order by num_ratings desc) as num_ratings_rank,
        rank() over (order by bayesian_avg desc nulls last) as bayesian_rank,
        percent_rank() over (order by num_ratings) as popularity_percentile
    from scored
)

select
    movie_id,
    title,
    year,
    genres,
    is_in_movies_file,
    num_ratings,
    avg_rating,
    stddev_rating,
    median_rating,
    min_rating,
    max_rating,
    share_of_5_star,
    share_of_4_plus,
    share_of_2_or_less,
    bayesian_avg,
    bayesian_rank,
    num_ratings_rank,
    popularity_percentile,
    first_rated_at,
    last_rated_at
from ranked
