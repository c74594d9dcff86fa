{#
    dbt's create view, with the ephemeral CTEs inlined (`as not materialized`: PostgreSQL
    would copy the whole derivations table for a CTE read twice) and `security_barrier`
    (a reader's own functions see only the view's rows). _macros.yml says more.
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
