{# dbt's create view, ephemeral CTEs inlined, with security_barrier (_macros.yml). #}
{% macro postgres__create_view_as(relation, sql) -%}
    {%- set sql_header = config.get('sql_header', none) -%}
    {{ sql_header if sql_header is not none }}
    create view {{ relation.render() }} with (security_barrier)
    {% if config.get('contract').enforced %}
        {{ get_assert_columns_equivalent(sql) }}
    {%- endif %}
    as (
        {{ inline_ephemeral_ctes(sql) }}
    );
{%- endmacro %}

{# `__dbt__cte__<model> as (` -> `__dbt__cte__<model> as not materialized (` #}
{% macro inline_ephemeral_ctes(sql) -%}
    {{ return(modules.re.sub('(__dbt__cte__\\w+)\\s+as\\s+\\(', '\\1 as not materialized (', sql)) }}
{%- endmacro %}
