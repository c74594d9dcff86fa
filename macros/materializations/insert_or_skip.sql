{#
    Custom incremental strategy `insert_or_skip`: insert the new rows, skip every row whose
    unique key is already in the table. `on conflict ... do nothing` makes it safe against
    a concurrent run of the same model: the second insert of a key waits for the first
    run's transaction, then skips the row instead of failing or duplicating it (dbt's
    delete+insert would fail on the unique index, and without one would duplicate).
    Needs a unique index or primary key on exactly the unique_key columns.
#}
{% macro get_incremental_insert_or_skip_sql(arg_dict) %}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- if not unique_key -%}
        {{ exceptions.raise_compiler_error(
            "Incremental strategy 'insert_or_skip' needs a unique_key (backed by a unique index "
            ~ "or primary key) to detect rows that are already there. Fix: set unique_key in "
            ~ "the model's config."
        ) }}
    {%- endif -%}
    {%- set key_columns = [unique_key] if unique_key is string else unique_key -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    insert into {{ arg_dict['target_relation'] }} ({{ columns }})
    select {{ columns }}
    from {{ arg_dict['temp_relation'] }}
    on conflict ({{ get_quoted_csv(key_columns) }}) do nothing
{% endmacro %}
