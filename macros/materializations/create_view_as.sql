{#
    Views in this project inline the ephemeral models' CTEs (`as not materialized`).
    PostgreSQL materializes a CTE that a query references more than once, and the
    ephemeral stg_crystal_forge__derivations is referenced twice in the published view
    (queued systems, package statuses): materialized, every refresh copied the whole
    derivations table (finished history included) into a tuplestore, with no index usable
    on it. Inlined, each reference is planned against the table, its indexes and its
    statistics. int_systems_filtered_to_queue (one row per queued system) is then read
    three times through the (derivation_type, status_id) index: cheap, and the planner
    keeps seeing real column statistics. Only the CTEs dbt injects for
    ephemeral models (`__dbt__cte__<model>`) are rewritten; results are the same.
    Overrides dbt's default__create_view_as for the postgres adapter.
#}
{% macro postgres__create_view_as(relation, sql) -%}
    {{ return(default__create_view_as(relation, inline_ephemeral_ctes(sql))) }}
{%- endmacro %}


{# `__dbt__cte__<model> as (` -> `__dbt__cte__<model> as not materialized (` #}
{% macro inline_ephemeral_ctes(sql) -%}
    {{ return(modules.re.sub('(__dbt__cte__\\w+)\\s+as\\s+\\(', '\\1 as not materialized (', sql)) }}
{%- endmacro %}
