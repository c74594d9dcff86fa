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
    Views are `security_barrier`: a reader's own functions in a `where` on the view see
    only the view's rows, never the source rows its filters drop (the view runs with its
    owner's rights). Leakproof operators (=, <, ... on ids, names, times) still push down.
    Overrides dbt's default__create_view_as for the postgres adapter, statement for
    statement but for the option and the rewrite.
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
