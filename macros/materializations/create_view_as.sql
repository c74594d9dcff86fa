{#
    dbt's create view, ephemeral CTEs inlined, with security_barrier (_macros.yml):
    dbt-adapters 1.24.5's global_project/macros/relations/view/create.sql, file
    sha256 55722c256a38399ffc929a1ecb4f3018858f5186b0daeb5054284e19e32decb9, its
    default__create_view_as but `with (security_barrier)` and inline_ephemeral_ctes(sql).
    .ci/lint fails when dbt's file changes: re-diff, then update the hash.
#}
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
