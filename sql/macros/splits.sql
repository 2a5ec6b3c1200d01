{#- A rating's draw for a hash split: the top 53 bits of a 64-bit hash of (user_id, movie_id,
    seed, and salt when given), as a double in [0, 1). The same ratings and seed give the same
    draws on any cluster layout (no rand()). seed and salt are SQL expressions. ratings_split
    draws with var('split_seed') and no salt; tune's validation share draws from the train
    rows with its seed and salt 'validation', which keeps it independent of the test split:
    with the same seed and no salt every train row would draw above the test fraction. -#}
{% macro split_draw(seed, salt=none) -%}
    cast(
        shiftrightunsigned(
            xxhash64(user_id, movie_id, {{ seed }}{% if salt is not none %}, {{ salt }}{% endif %}),
            11
        ) as double
    ) / power(2, 53)
{%- endmacro %}
