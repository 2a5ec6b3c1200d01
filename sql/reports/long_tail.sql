-- The popularity long tail: every rated movie, most rated first, with the share of all
-- ratings held by the movies up to and including it. 'head' movies are the most rated ones
-- that together hold the first var('head_share_of_ratings') of all ratings (a movie is
-- in the head when the movies before it hold less than that share); the rest are 'tail'.
-- Plotting cumulative_share_of_ratings against share_of_movies draws the long-tail curve.

with movie_stats as (
    select
        movie_id,
        title,
        num_ratings
    from {{ ref('movie_stats') }}
    where num_ratings > 0
),

ranked_movies as (
    select
        *,
        row_number() over (order by num_ratings desc, movie_id asc) as popularity_rank,
        sum(num_ratings) over (
            order by num_ratings desc, movie_id asc
            rows between unbounded preceding and current row
        ) as cumulative_ratings,
        count(*) over () as total_movies,
        sum(num_ratings) over () as total_ratings
    from movie_stats
),

shares as (
    select
        *,
        popularity_rank / total_movies as share_of_movies,
        cumulative_ratings / total_ratings as cumulative_share_of_ratings,
        case
            when
                (cumulative_ratings - num_ratings) / total_ratings
                < {{ var('head_share_of_ratings') }}
                then 'head'
            else 'tail'
        end as segment
    from ranked_movies
)

select
    movie_id,
    title,
    num_ratings,
    popularity_rank,
    cumulative_ratings,
    share_of_movies,
    cumulative_share_of_ratings,
    segment
from shares
