{#- The bias baseline, defined once: train centres ratings on it before ALS (pipelines/als.py
    renders these macros), and test_predictions' user_movie_bias baseline is made of it.
    mu is the mean train rating; the movie biases come first and the user biases are fit on
    what they leave, each damped, i.e. shrunk toward 0 as if it had that many extra ratings
    at the mean:
        b_i = sum over the movie's train ratings (r - mu) / (n_i + movie_bias_damping)
        b_u = sum over the user's train ratings (r - mu - b_i) / (n_u + user_bias_damping)
    train_ratings: a relation of (user_id, movie_id, rating); baseline_inputs: a one-row
    relation of (global_mean_rating, movie_bias_damping, user_bias_damping), the dampings
    the training run's parameters give. -#}

{#- mu, as one row: global_mean_rating. -#}
{% macro global_mean_rating(train_ratings) -%}
    select avg(rating) as global_mean_rating
    from {{ train_ratings }}
{%- endmacro %}

{#- b_i per movie: movie_id, movie_train_ratings (n_i), movie_mean_rating (undamped),
    movie_bias. -#}
{% macro damped_movie_biases(train_ratings, baseline_inputs) -%}
    select
        rated.movie_id,
        count(*) as movie_train_ratings,
        avg(rated.rating) as movie_mean_rating,
        sum(rated.rating - inputs.global_mean_rating)
        / (count(*) + inputs.movie_bias_damping) as movie_bias
    from {{ train_ratings }} as rated
    cross join {{ baseline_inputs }} as inputs
    group by rated.movie_id, inputs.movie_bias_damping
{%- endmacro %}

{#- b_u per user, on what the movie biases (damped_movie_biases) leave: user_id,
    user_train_ratings (n_u), user_bias. -#}
{% macro damped_user_biases(train_ratings, movie_biases, baseline_inputs) -%}
    select
        rated.user_id,
        count(*) as user_train_ratings,
        sum(rated.rating - inputs.global_mean_rating - movie.movie_bias)
        / (count(*) + inputs.user_bias_damping) as user_bias
    from {{ train_ratings }} as rated
    inner join {{ movie_biases }} as movie on rated.movie_id = movie.movie_id
    cross join {{ baseline_inputs }} as inputs
    group by rated.user_id, inputs.user_bias_damping
{%- endmacro %}
