{#
    Views in this project inline the staging models' CTEs (`as not materialized`).
    PostgreSQL materializes a CTE that a query references more than once, and the
    ephemeral stg_crystal_forge__derivations is referenced twice in the published view
    (queued systems, package statuses): materialized, every refresh would copy the whole
    derivations table (finished history included) into a tuplestore, and no index could
    be used on it. A staging model is a rename/cast of one source table, so inlined it
    is planned as that table, with its indexes and statistics. Intermediate models keep
    PostgreSQL's default: int_systems_filtered_to_queue (about one row per queued system,
    read three times) is computed once. Only the CTEs dbt injects for ephemeral staging
    models (`__dbt__cte__stg_<name>`) are rewritten; results are the same either way.
    Overrides dbt's default__create_view_as for the postgres adapter.
#}
{% macro postgres__create_view_as(relation, sql) -%}
    {{ return(default__create_view_as(relation, inline_staging_ctes(sql))) }}
{%- endmacro %}


{# `__dbt__cte__stg_<name> as (` -> `__dbt__cte__stg_<name> as not materialized (` #}
{% macro inline_staging_ctes(sql) -%}
    {{ return(modules.re.sub('(__dbt__cte__\\w+)\\s+as\\s+\\(', '\\1 as not materialized (', sql)) }}
{%- endmacro %}
