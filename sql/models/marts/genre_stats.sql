-- One row per genre named in movies.genres, plus '(no genres listed)' for movies without
-- any. A movie counts once in each of its genres, so num_movies and num_ratings add up to
-- more than the totals across genres. Ratings of movies missing from the movies file have no
-- genre and are left out.

with movies as (
    select
        movie_id,
        genres
    from {{ ref('movies') }}
),

ratings as (
    select
        movie_id,
        rating
    from {{ ref('ratings') }}
),

movie_genres as (
    select
        movies.movie_id,
        coalesce(movie_genre.genre, '(no genres listed)') as genre
    from movies
        lateral view outer explode(movies.genres) movie_genre as genre
),

movie_ratings as (
    -- per-movie sums, so the genre join multiplies movies, not ratings
    select
        movie_id,
        count(*) as num_ratings,
        sum(rating) as sum_rating,
        sum(rating * rating) as sum_squared_rating
    from ratings
    group by movie_id
),

totals as (
    select
        (select count(*) from movies) as total_movies,
        (select count(*) from ratings) as total_ratings
),

genre_sums as (
    select
        movie_genres.genre,
        count(*) as num_movies,
        count(movie_ratings.movie_id) as num_rated_movies,
        coalesce(sum(movie_ratings.num_ratings), 0) as num_ratings,
        sum(movie_ratings.sum_rating) as sum_rating,
        sum(movie_ratings.sum_squared_rating) as sum_squared_rating,
        avg(try_divide(movie_ratings.sum_rating, movie_ratings.num_ratings))
            as avg_movie_avg_rating
    from movie_genres
    left join movie_ratings on movie_genres.movie_id = movie_ratings.movie_id
    group by movie_genres.genre
),

genre_stats as (
    select
        genre_sums.*,
        try_divide(genre_sums.sum_rating, genre_sums.num_ratings) as avg_rating,
        -- sample standard deviation from the sums: sqrt((sum x^2 - (sum x)^2 / n) / (n - 1)),
        -- floored at 0 against rounding; null below two ratings, like stddev_samp
        case
            when genre_sums.num_ratings > 1
                then sqrt(greatest(
                    (
                        genre_sums.sum_squared_rating
                        - genre_sums.sum_rating * genre_sums.sum_rating / genre_sums.num_ratings
                    ) / (genre_sums.num_ratings - 1),
                    0.0
                ))
        end as stddev_rating,
        try_divide(cast(genre_sums.num_movies as double), totals.total_movies) as share_of_movies,
        try_divide(cast(genre_sums.num_ratings as double), totals.total_ratings)
            as share_of_ratings
    from genre_sums
    cross join totals
)

select
    genre,
    num_movies,
    num_rated_movies,
    num_ratings,
    avg_rating,
    stddev_rating,
    avg_movie_avg_rating,
    share_of_movies,
    share_of_ratings,
    rank() over (order by num_ratings desc) as num_ratings_rank
from genre_stats
