-- The rating model's estimate, as a SQL function: train scores its predictions with it, and
-- the rating_estimates view gives any (user, movie) pair the same number.
-- (sqlfluff wants a space between a function's name and its parameter list here.)

-- global mean + user bias + movie bias + the dot product of the two factor vectors, kept
-- within the rating scale [low, high]; a null bound leaves that side open.
create or replace function movielens.rating_estimate (
    global_mean double,
    user_bias double,
    movie_bias double,
    user_factors array<float>,
    movie_factors array<float>,
    low double,
    high double
)
returns double
comment 'Rating model estimate: mu + b_user + b_movie + factors . factors, within [low, high].'
return least(
    greatest(
        global_mean + user_bias + movie_bias + aggregate(
            zip_with(user_factors, movie_factors, (u, m) -> cast(u as double) * m),
            cast(0 as double),
            (total, x) -> total + x
        ),
        coalesce(low, cast('-Infinity' as double))
    ),
    coalesce(high, cast('Infinity' as double))
);
