{#- Top-k ranking quality of test lists against two train-only baselines: the one
    computation behind the ranking_metrics report and `reelhouse tune`'s ranking objective
    (which passes its fit rows as 'train' and its validation rows as 'test'). The columns and
    every formula are documented on ranking_metrics (sql/reports/_reports.yml).
    lists: a relation of (run_id, model, user_id, rank, movie_id, score, served), each list
    made from train rows only; split: a relation of (user_id, movie_id, rating, split);
    ranking_ks: comma-separated cut-offs; relevance_threshold: the 'threshold' relevance;
    prior_weight: the top_rated baseline's Bayesian prior weight. -#}
{% macro ranking_metrics_query(lists, split, ranking_ks, relevance_threshold, prior_weight) -%}
with test_lists as (
    select
        run_id,
        model,
        user_id,
        rank,
        movie_id,
        score,
        served
    from {{ lists }} as given_lists
),

relevance_kinds as (
    select
        'any' as relevance,
        cast(null as double) as relevance_threshold
    union all
    select
        'threshold' as relevance,
        cast({{ relevance_threshold }} as double) as relevance_threshold
),

ratings_split as (
    select
        user_id,
        movie_id,
        rating,
        split
    from {{ split }}
),

cutoffs as (
    select distinct
        case
            when try_cast(trim(k_text) as int) >= 1 then try_cast(trim(k_text) as int)
            else raise_error(concat(
                'var ranking_ks must list whole numbers >= 1 separated by commas, got ',
                cast({{ ranking_ks }} as string)
            ))
        end as k
    from (
        select explode(split(cast({{ ranking_ks }} as string), ',')) as k_text
    ) as k_texts
),

largest_cutoff as (
    select max(k) as max_k
    from cutoffs
),

train_ratings as (
    select
        user_id,
        movie_id,
        rating
    from ratings_split
    where split = 'train'
),

relevant_items as (
    select
        relevance_kinds.relevance,
        ratings_split.user_id,
        ratings_split.movie_id
    from ratings_split
    inner join relevance_kinds
        on
            relevance_kinds.relevance_threshold is null
            or ratings_split.rating >= relevance_kinds.relevance_threshold
    where ratings_split.split = 'test'
),

relevant_counts as (
    select
        relevance,
        user_id,
        count(*) as num_relevant
    from relevant_items
    group by relevance, user_id
),

train_prior as (
    select
        avg(rating) as global_mean_rating,
        cast({{ prior_weight }} as double) as prior_weight
    from train_ratings
),

movie_popularity as (
    select
        train_ratings.movie_id,
        count(*) as num_train_ratings,
        (train_prior.prior_weight * train_prior.global_mean_rating + sum(train_ratings.rating))
        / (train_prior.prior_weight + count(*)) as bayesian_avg
    from train_ratings
    cross join train_prior
    group by
        train_ratings.movie_id,
        train_prior.prior_weight,
        train_prior.global_mean_rating
),

popularity_order as (
    select
        'top_rated' as model,  -- noqa: RF04
        movie_id,
        row_number() over (
            order by bayesian_avg desc, num_train_ratings desc, movie_id asc
        ) as popularity_rank
    from movie_popularity
    union all
    select
        'most_rated' as model,  -- noqa: RF04
        movie_id,
        row_number() over (
            order by num_train_ratings desc, movie_id asc
        ) as popularity_rank
    from movie_popularity
),

listed_users as (
    select distinct
        run_id,
        user_id
    from test_lists
),

user_train_counts as (
    select
        user_id,
        count(*) as num_train_ratings
    from train_ratings
    group by user_id
),

popularity_candidates as (
    -- a user's top max_k unrated movies are among the first max_k + (movies the user rated
    -- in train) of the popularity order: an equi-join on rank, linear in the train rows
    select
        listed_users.run_id,
        listed_users.user_id,
        candidate_ranks.candidate_rank
    from listed_users
    cross join largest_cutoff
    left join user_train_counts on listed_users.user_id = user_train_counts.user_id  -- noqa: ST11
        lateral view explode(
            sequence(1, largest_cutoff.max_k + coalesce(user_train_counts.num_train_ratings, 0))
        ) candidate_ranks as candidate_rank
),

popularity_lists as (
    select
        popularity_candidates.run_id,
        popularity_order.model,
        popularity_candidates.user_id,
        popularity_order.movie_id,
        row_number() over (
            partition by popularity_order.model, popularity_candidates.user_id
            order by popularity_order.popularity_rank
        ) as list_position
    from popularity_candidates
    inner join popularity_order
        on popularity_candidates.candidate_rank = popularity_order.popularity_rank
    left anti join train_ratings
        on
            popularity_candidates.user_id = train_ratings.user_id
            and popularity_order.movie_id = train_ratings.movie_id
),

model_lists as (
    select
        run_id,
        model,
        served,
        user_id,
        movie_id,
        row_number() over (
            partition by run_id, model, user_id order by rank asc, score desc, movie_id asc
        ) as list_position
    from test_lists
),

lists as (
    select
        run_id,
        model,
        served,
        user_id,
        movie_id,
        list_position
    from model_lists
    union all
    select
        popularity_lists.run_id,
        popularity_lists.model,
        false as served,
        popularity_lists.user_id,
        popularity_lists.movie_id,
        popularity_lists.list_position
    from popularity_lists
    cross join largest_cutoff
    where popularity_lists.list_position <= largest_cutoff.max_k
),

judged_lists as (
    -- hits_so_far: relevant items at positions 1..list_position (for AP@k)
    select
        lists.run_id,
        lists.model,
        relevance_kinds.relevance,
        lists.user_id,
        lists.movie_id,
        lists.list_position,
        relevant_items.movie_id is not null as is_relevant,
        count(relevant_items.movie_id) over (
            partition by lists.run_id, lists.model, relevance_kinds.relevance, lists.user_id
            order by lists.list_position
            rows between unbounded preceding and current row
        ) as hits_so_far
    from lists
    cross join relevance_kinds
    left join relevant_items
        on
            relevance_kinds.relevance = relevant_items.relevance
            and lists.user_id = relevant_items.user_id
            and lists.movie_id = relevant_items.movie_id
),

user_list_scores as (
    select
        judged_lists.run_id,
        judged_lists.model,
        judged_lists.relevance,
        cutoffs.k,
        judged_lists.user_id,
        count_if(judged_lists.is_relevant) as num_hits,
        sum(
            if(judged_lists.is_relevant, judged_lists.hits_so_far / judged_lists.list_position, 0)
        ) as sum_precision_at_hits,
        sum(if(judged_lists.is_relevant, 1 / log2(judged_lists.list_position + 1), 0)) as dcg
    from judged_lists
    inner join cutoffs on judged_lists.list_position <= cutoffs.k
    group by
        judged_lists.run_id,
        judged_lists.model,
        judged_lists.relevance,
        cutoffs.k,
        judged_lists.user_id
),

models as (
    select distinct
        run_id,
        model,
        served
    from lists
),

evaluated_users as (
    select
        models.run_id,
        models.model,
        relevant_counts.relevance,
        cutoffs.k,
        relevant_counts.user_id,
        relevant_counts.num_relevant
    from models
    cross join cutoffs
    cross join relevant_counts
),

user_metrics as (
    select
        evaluated_users.run_id,
        evaluated_users.model,
        evaluated_users.relevance,
        evaluated_users.k,
        evaluated_users.user_id,
        cast(if(coalesce(user_list_scores.num_hits, 0) > 0, 1, 0) as double) as hit,
        coalesce(user_list_scores.num_hits, 0) / evaluated_users.k as precision_at_k,
        coalesce(user_list_scores.num_hits, 0) / evaluated_users.num_relevant as recall_at_k,
        coalesce(user_list_scores.sum_precision_at_hits, 0)
        / least(evaluated_users.k, evaluated_users.num_relevant) as average_precision_at_k,
        coalesce(user_list_scores.dcg, 0) / aggregate(
            sequence(1, least(evaluated_users.k, evaluated_users.num_relevant)),
            cast(0 as double),
            (total, i) -> total + 1 / log2(i + 1)
        ) as ndcg_at_k
    from evaluated_users
    left join user_list_scores
        on
            evaluated_users.run_id = user_list_scores.run_id
            and evaluated_users.model = user_list_scores.model
            and evaluated_users.relevance = user_list_scores.relevance
            and evaluated_users.k = user_list_scores.k
            and evaluated_users.user_id = user_list_scores.user_id
),

accuracy as (
    select
        run_id,
        model,
        relevance,
        k,
        count(*) as num_evaluated_users,
        avg(precision_at_k) as precision_at_k,
        avg(recall_at_k) as recall_at_k,
        avg(ndcg_at_k) as ndcg_at_k,
        avg(average_precision_at_k) as map_at_k,
        avg(hit) as hit_rate
    from user_metrics
    group by run_id, model, relevance, k
),

catalog_size as (
    select count(*) as num_train_movies
    from movie_popularity
),

list_reach as (
    select
        lists.run_id,
        lists.model,
        cutoffs.k,
        count(distinct lists.user_id) as num_listed_users,
        count(distinct lists.movie_id) as num_distinct_movies,
        avg(coalesce(movie_popularity.num_train_ratings, 0)) as mean_popularity
    from lists
    inner join cutoffs on lists.list_position <= cutoffs.k
    left join movie_popularity on lists.movie_id = movie_popularity.movie_id
    group by lists.run_id, lists.model, cutoffs.k
),

ranking_metrics as (
    select
        list_reach.run_id,
        list_reach.model,
        models.served,
        relevance_kinds.relevance,
        list_reach.k,
        list_reach.num_listed_users,
        list_reach.num_distinct_movies,
        list_reach.mean_popularity,
        relevance_kinds.relevance_threshold,
        accuracy.precision_at_k,
        accuracy.recall_at_k,
        accuracy.ndcg_at_k,
        accuracy.map_at_k,
        accuracy.hit_rate,
        coalesce(accuracy.num_evaluated_users, 0) as num_evaluated_users,
        try_divide(
            cast(list_reach.num_distinct_movies as double), catalog_size.num_train_movies
        ) as catalog_coverage
    from list_reach
    cross join catalog_size
    cross join relevance_kinds
    inner join models
        on list_reach.run_id = models.run_id and list_reach.model = models.model
    left join accuracy
        on
            list_reach.run_id = accuracy.run_id
            and list_reach.model = accuracy.model
            and relevance_kinds.relevance = accuracy.relevance
            and list_reach.k = accuracy.k
)

select
    run_id,
    model,
    served,
    relevance,
    k,
    num_evaluated_users,
    precision_at_k,
    recall_at_k,
    ndcg_at_k,
    map_at_k,
    hit_rate,
    catalog_coverage,
    mean_popularity,
    num_listed_users,
    num_distinct_movies,
    relevance_threshold,
    -- the lift over the field's "most popular" list, the same run, relevance and k
    try_divide(
        ndcg_at_k,
        max(if(model = 'most_rated', ndcg_at_k, null)) over (partition by run_id, relevance, k)
    ) as ndcg_lift_over_most_rated
from ranking_metrics
{%- endmacro %}
