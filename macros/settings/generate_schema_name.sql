{# Where each node goes, every name checked before dbt creates a schema (_macros.yml). #}
{% macro generate_schema_name(custom_schema_name, node) %}
    {%- set source_schema = setting('source_schema') -%}
    {%- do identifier(target.database, "the database of target '" ~ target.name ~ "' (env var PGDATABASE)",
        "set PGDATABASE to the database's name, e.g. PGDATABASE=crystal_forge") -%}
    {%- if node.resource_type == 'seed' and node.fqn[1] == 'example' -%}
        {{ source_schema }}
    {%- elif custom_schema_name is none -%}
        {{ identifier(target.schema, "the schema of target '" ~ target.name ~ "' (env var BUILDQUEUE_SCHEMA in profiles.yml)",
            "set BUILDQUEUE_SCHEMA (or the target's schema:) to a plain name, e.g. BUILDQUEUE_SCHEMA=monitoring", quote=false) }}
    {%- else -%}
        {{ identifier(custom_schema_name, "the data tests' schema (env var BUILDQUEUE_AUDIT_SCHEMA)",
            "set BUILDQUEUE_AUDIT_SCHEMA to a plain name or unset it (default dbt_test__audit)", quote=false) }}
    {%- endif -%}
{% endmacro %}
