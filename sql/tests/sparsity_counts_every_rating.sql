-- A singular test: the rows it returns fail. sparsity's num_ratings is the number of rows in
-- ratings: the matrix statistics describe exactly the ratings people query.
with ratings as (
    select count(*) as num_ratings
    from {{ ref('ratings') }}
)

select
    sparsity.num_ratings,
    ratings.num_ratings as ratings_rows
from {{ ref('sparsity') }} as sparsity
cross join ratings
where sparsity.num_ratings != ratings.num_ratings
