-- How often each rating value is given: one row per rating value present in ratings, with
-- its share of all ratings and the cumulative share up to and including it.

with ratings as (
    select rating
    from {{ ref('ratings') }}
),

rating_counts as (
    select
        rating,
        count(*) as num_ratings
    from ratings
    group by rating
),

shares as (
    select
        *,
        num_ratings / sum(num_ratings) over () as share,  -- noqa: RF04
        sum(num_ratings) over (order by rating)
        / sum(num_ratings) over () as cumulative_share
    from rating_counts
)

select
    rating,
    num_ratings,
    share,  -- noqa: RF04
    cumulative_share
from shares
