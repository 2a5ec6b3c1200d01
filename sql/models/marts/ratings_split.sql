{#- var('split_method'): random (default), temporal, stratified or kfold; see below. -#}
{%- set split_method = var('split_method') %}
{%- if split_method not in ('random', 'temporal', 'stratified', 'kfold', 'grouplens') %}
    {{- raise_compiler_error(
        "var split_method must be 'random', 'temporal', 'stratified', 'kfold' or 'grouplens', "
        ~ "got " ~ split_method
    ) }}
{%- endif %}
{%- set grouplens_names = ['u1', 'u2', 'u3', 'u4', 'u5', 'ua', 'ub'] %}
{%- set grouplens_split = grouplens_names | select('equalto', var('grouplens_split'))
    | first %}
{%- if grouplens_split is not defined %}
    {{- raise_compiler_error(
        "var grouplens_split must be one of u1, u2, u3, u4, u5, ua, ub, got "
        ~ var('grouplens_split')
    ) }}
{%- endif %}
{%- set folds = var('folds') | int %}
{%- set fold = var('fold') | int %}
{%- if split_method == 'kfold' and not (folds >= 2 and 0 <= fold < folds) %}
    {{- raise_compiler_error(
        "var fold must be a whole number from 0 to folds - 1 and folds at least 2, got fold "
        ~ fold ~ " of " ~ folds
    ) }}
{%- endif %}
-- ratings, each labelled 'train' or 'test' for offline evaluation. Deterministic: the same
-- ratings and vars give the same split on any cluster layout.
-- split_method 'random': a rating is 'test' when a hash of (user_id, movie_id, split_seed),
--   mapped to [0, 1), is below test_fraction; about test_fraction of ratings, independent of
--   partitioning (no rand()).
-- split_method 'temporal': each user's latest ratings (by rated_at, then movie_id) are 'test',
--   round(n * test_fraction) of a user's n ratings but at most n - 1, so every user keeps at
--   least one training rating (a user with one rating keeps it in train).
-- split_method 'stratified': the same share of each user held out, as Microsoft Recommenders'
--   stratified split does: the user's ratings in the order of the hash above, the first
--   round(n * test_fraction) (at most n - 1) are 'test'.
-- split_method 'kfold': the hash cuts the ratings into var('folds') (default 5) equal shares;
--   share var('fold') (0 to folds - 1, default 0) is 'test'. Runs over fold 0..folds-1
--   together test every rating once.
-- split_method 'grouplens': ml-100k's own split var('grouplens_split') (u1 .. u5, ua, ub;
--   default u1, see grouplens_splits): a rating in its .test file is 'test', any other
--   'train'. The build fails when the dataset did not ship that split.

with ratings as (
    select
        user_id,
        movie_id,
        rating,
        rated_at
    from {{ ref('ratings') }}
),

ordered_ratings as (
    select
        user_id,
        movie_id,
        rating,
        rated_at,
        {{ split_draw(var('split_seed')) }} as split_draw
    from ratings
),

-- read only by split_method 'grouplens'
grouplens_test as (  -- noqa: ST03
    select distinct
        user_id,
        movie_id
    from {{ ref('grouplens_splits') }}
    where split_name = '{{ grouplens_split }}' and split_part = 'test'
),

ranked_ratings as (
    select
        user_id,
        movie_id,
        rating,
        rated_at,
        split_draw,
        row_number() over (
            partition by user_id order by rated_at desc, movie_id desc
        ) as recency_rank,
        row_number() over (
            partition by user_id order by split_draw asc, movie_id asc
        ) as draw_rank,
        count(*) over (partition by user_id) as user_num_ratings
    from ordered_ratings
),

labelled as (
    select
        ranked_ratings.user_id,
        ranked_ratings.movie_id,
        ranked_ratings.rating,
        ranked_ratings.rated_at,
        {% if split_method in ('temporal', 'stratified') -%}
            {%- set order_rank = 'recency_rank' if split_method == 'temporal' else 'draw_rank' %}
            case
                when ranked_ratings.{{ order_rank }} <= least(
                    round(ranked_ratings.user_num_ratings * {{ var('test_fraction') }}),
                    ranked_ratings.user_num_ratings - 1
                ) then 'test'
                else 'train'
            end as split
        {%- elif split_method == 'grouplens' -%}
            case
                when (select count(*) from grouplens_test) = 0
                    then raise_error(
                        'split_method grouplens needs the split files of var grouplens_split '
                        || '(u1.base and u1.test for u1) in the ml-100k folder; this dataset '
                        || 'has none'
                    )
                when grouplens_test.user_id is not null then 'test'
                else 'train'
            end as split
        {%- elif split_method == 'kfold' -%}
            case
                when floor(ranked_ratings.split_draw * {{ folds }}) = {{ fold }} then 'test'
                else 'train'
            end as split
        {%- else -%}
            case
                when ranked_ratings.split_draw < {{ var('test_fraction') }} then 'test'
                else 'train'
            end as split
        {%- endif %}
    from ranked_ratings
    {%- if split_method == 'grouplens' %}
        left join grouplens_test
            on
                ranked_ratings.user_id = grouplens_test.user_id
                and ranked_ratings.movie_id = grouplens_test.movie_id
    {%- endif %}
)

select
    user_id,
    movie_id,
    rating,
    rated_at,
    split
from labelled
