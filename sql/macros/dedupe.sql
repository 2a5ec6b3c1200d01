{#- Which of several good lines for the same key is kept: one definition, used both by the
    mart that keeps the winner and by the model that rejects the others. -#}

{#- Ratings: the latest rating of a (user, movie) pair wins; on a tie in rated_at, the line
    read last (by source_file, then line_number) wins, as a later write would. -#}
{% macro rating_winner_order() -%}
    rated_at desc, source_file desc, line_number desc
{%- endmacro %}

{#- Movies, links, users and genres have no time: the line read last wins. -#}
{% macro line_winner_order() -%}
    source_file desc, line_number desc
{%- endmacro %}

{#- The good lines of a staging relation that lose to another line with the same key (see
    line_winner_order), as rejected_lines rows: file_kind, dataset_format, source_file,
    line_number, raw_line, reason ('duplicate movie_id 12 of movies.csv:40 ...'). -#}
{% macro duplicate_lines(file_kind, relation, key_column) -%}
    select
        '{{ file_kind }}' as file_kind,
        dataset_format,
        source_file,
        line_number,
        raw_line,
        concat(
            'duplicate {{ key_column }} ', {{ key_column }}, ' of ',
            {{ file_name('kept_source_file') }}, ':', kept_line_number,
            ' (the line read last is kept)'
        ) as reason
    from (
        select
            dataset_format,
            source_file,
            line_number,
            raw_line,
            {{ key_column }},
            row_number() over key_last_line_first as key_rank,
            first_value(source_file) over key_last_line_first as kept_source_file,
            first_value(line_number) over key_last_line_first as kept_line_number
        from {{ relation }}
        where reject_reason is null
        window key_last_line_first as (
            partition by {{ key_column }} order by {{ line_winner_order() }}
        )
    ) as ranked_lines
    where key_rank > 1
{%- endmacro %}
