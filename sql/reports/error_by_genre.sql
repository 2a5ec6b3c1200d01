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
        test_prediction_errors.*,
        coalesce(movie_genres.genre, '(not in movies file)') as genre
    from test_prediction_errors
    left join movie_genres on test_prediction_errors.movie_id = movie_genres.movie_id
),

errors_by_genre as (
    {{ error_metrics('genre_errors', by='genre', counting='movie_id') }}
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
