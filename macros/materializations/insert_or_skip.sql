{# Incremental strategy insert_or_skip: `on conflict do nothing`, safe against a concurrent run. #}
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
