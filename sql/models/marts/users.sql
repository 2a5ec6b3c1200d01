-- User demographics where the format has them (ml-100k u.user, ml-1m users.dat); empty for
-- ml-latest and ml-10m. One row per user_id; a repeated user_id keeps the line read last (the
-- others are in rejected_lines).

with staged_users as (
    select
        dataset_format,
        source_file,
        line_number,
        user_id,
        gender,
        age,
        age_group,
        occupation_id,
        occupation,
        zip_code,
        reject_reason
    from {{ ref('stg_movielens__users') }}
),

ranked_users as (
    select
        *,
        row_number() over (
            partition by user_id order by {{ line_winner_order() }}
        ) as user_rank
    from staged_users
    where reject_reason is null
)

select
    user_id,
    gender,
    age,
    age_group,
    occupation_id,
    occupation,
    zip_code,
    dataset_format,
    source_file,
    line_number
from ranked_users
where user_rank = 1
