-- Top-k ranking quality of the latest run's test lists and of two baselines, one row per
-- (run, model, relevance, k), k from var('ranking_ks') (a comma-separated list).
-- Every list was made from train ratings only and never holds a movie the user rated in train.
-- relevance 'any': relevant = any held-out (test) rating: the protocol of Microsoft
--   Recommenders and most papers. relevance 'threshold': a test rating >=
--   var('relevance_threshold').
-- Evaluated users: users with at least one relevant test item; a user without a list scores 0.
-- For an evaluated user with R relevant items, a list whose item at position i is relevant
-- (rel_i = 1) or not (0):
--   precision@k = hits / k (k, also when the list is shorter than k)
--   recall@k    = hits / R
--   AP@k        = sum over relevant positions i <= k of (hits in 1..i) / i, over min(k, R)
--   NDCG@k      = sum over i <= k of rel_i / log2(i + 1), over the same sum for an ideal
--                 list (min(k, R) relevant items first)
--   hit rate    = 1 when hits >= 1
-- each averaged over the evaluated users (MAP@k is the mean of AP@k). Over every listed user:
-- catalog_coverage = distinct movies in the top-k lists / movies with a train rating, and
-- mean_popularity = mean train ratings of the movies in the top-k lists.
-- Models: the served list model's test lists (test_recommendations, served = true), the other
-- candidates (candidate_recommendations), position = rank, ties broken by higher score, then
-- lower movie_id; and, for every user with a test list, two baselines from train ratings only
-- (so neither sees the test ratings it is scored on), each the user's unrated movies in order:
-- 'most_rated': most train ratings first (the field's "most popular"), ties by lower movie_id;
-- 'top_rated': highest bayesian_avg of the train ratings, prior weight
-- var('bayesian_prior_weight'), ties by more train ratings, then lower movie_id.

{%- set lists %}
    (
        select
            run_id,
            model,
            user_id,
            rank,
            movie_id,
            score,
            true as served
        from {{ source('train', 'test_recommendations') }}
        union all
        select
            run_id,
            model,
            user_id,
            rank,
            movie_id,
            score,
            false as served
        from {{ source('train', 'candidate_recommendations') }}
    )
{%- endset %}

{{ ranking_metrics_query(
    lists, ref('ratings_split'), var('ranking_ks'),
    var('relevance_threshold'), var('bayesian_prior_weight')
) }}
