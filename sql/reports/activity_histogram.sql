-- How many ratings users and movies have, as a histogram with doubling bins: bin b holds the
-- users (or movies) with 2^b to 2^(b+1) - 1 ratings (1, 2-3, 4-7, 8-15, ...), so a heavy
-- tail stays readable. Users and movies without ratings are left out. entity is 'user' or
-- 'movie'; num_ratings sums the ratings of the bin's users or movies.

with user_stats as (
    select num_ratings
    from {{ ref('user_stats') }}
    where num_ratings > 0
),

movie_stats as (
    select num_ratings
    from {{ ref('movie_stats') }}
    where num_ratings > 0
),

counts as (
    select
        'user' as entity,
        num_ratings
    from user_stats
    union all
    select
        'movie' as entity,
        num_ratings
    from movie_stats
),

binned as (
    select
        *,
        -- floor(log2(n)), exactly: the number of binary digits of n, less one
        length(bin(num_ratings)) - 1 as bin_index
    from counts
),

bins as (
    select
        entity,
        bin_index,
        count(*) as num_entities,
        sum(num_ratings) as num_ratings
    from binned
    group by entity, bin_index
),

described_bins as (
    select
        *,
        shiftleft(cast(1 as bigint), bin_index) as min_ratings,
        shiftleft(cast(1 as bigint), bin_index + 1) - 1 as max_ratings,
        num_entities / sum(num_entities) over (partition by entity) as share_of_entities,
        num_ratings / sum(num_ratings) over (partition by entity) as share_of_ratings
    from bins
)

select
    entity,
    bin_index,
    min_ratings,
    max_ratings,
    num_entities,
    num_ratings,
    share_of_entities,
    share_of_ratings
from described_bins
