-- One row per user: who rated, plus (where the format has demographics) users who rated
-- nothing, with num_ratings 0. Activity: first and last rating, the days between them, and
-- the number of distinct days (UTC) with at least one rating.

with ratings as (
    select
        user_id,
        rating,
        rated_at
    from {{ ref('ratings') }}
),

users as (
    select
        user_id,
        gender,
        age_group,
        occupation
    from {{ ref('users') }}
),

user_ratings as (
    select
        user_id,
        count(*) as num_ratings,
        avg(rating) as avg_rating,
        stddev_samp(rating) as stddev_rating,
        min(rating) as min_rating,
        max(rating) as max_rating,
        count(distinct rating) as num_distinct_ratings,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at,
        count(distinct to_date(rated_at)) as activity_days
    from ratings
    group by user_id
),

users_and_ratings as (
    select
        users.gender,
        users.age_group,
        users.occupation,
        user_ratings.avg_rating,
        user_ratings.stddev_rating,
        user_ratings.min_rating,
        user_ratings.max_rating,
        user_ratings.num_distinct_ratings,
        user_ratings.first_rated_at,
        user_ratings.last_rated_at,
        coalesce(users.user_id, user_ratings.user_id) as user_id,
        coalesce(user_ratings.num_ratings, 0) as num_ratings,
        coalesce(user_ratings.activity_days, 0) as activity_days,
        datediff(user_ratings.last_rated_at, user_ratings.first_rated_at) as active_span_days
    from users
    full outer join user_ratings on users.user_id = user_ratings.user_id
),

ranked as (
    select
        *,
        rank() over (order by num_ratings desc) as num_ratings_rank
    from users_and_ratings
)

select
    user_id,
    num_ratings,
    num_ratings_rank,
    avg_rating,
    stddev_rating,
    min_rating,
    max_rating,
    num_distinct_ratings,
    first_rated_at,
    last_rated_at,
    activity_days,
    active_span_days,
    gender,
    age_group,
    occupation
from ranked
