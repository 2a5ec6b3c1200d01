-- Test error of every model by the movie's genre. A movie counts in each of its genres, so a
-- test row is in as many genre rows as its movie has genres; '(no genres listed)' holds
-- movies without any, '(not in movies file)' rated movies the movies file does not list.

with test_prediction_errors as (
    select
        run_id,
        model,
        movie_id,
        error
    from {{ ref('test_prediction_errors') }}
),

movies as (
    select
        movie_id,
        genres
    from {{ ref('movies') }}
),

movie_genres as (
    select
        movies.movie_id,
        coalesce(movie_genre.genre, '(no genres listed)') as genre
    from movies
        lateral view outer explode(movies.genres) movie_genre as genre
),

genre_errors as (
    select
        test_prediction_errors.run_id,
        test_prediction_errors.model,
        test_prediction_errors.movie_id,
        test_prediction_errors.error,
        coalesce(movie_genres.genre, '(not in movies file)') as genre
    from test_prediction_errors
    left join movie_genres on test_prediction_errors.movie_id = movie_genres.movie_id
),

errors_by_genre as (
    select
        run_id,
        model,
        genre,
        count(distinct movie_id) as num_movies,
        count(*) as num_predictions,
        sqrt(avg(error * error)) as rmse,
        avg(abs(error)) as mae,
        avg(error) as mean_error
    from genre_errors
    group by run_id, model, genre
)

select
    run_id,
    model,
    genre,
    num_movies,
    num_predictions,
    rmse,
    mae,
    mean_error
from errors_by_genre
