{#
    Models go to the target's schema. Seeds (the example fixtures) go to var source_schema,
    because their post-hook publishes them as the very tables the sources read. dbt names
    every node through here while it parses, before it creates any schema, so every
    schema name (source_schema, the target's BUILDQUEUE_SCHEMA, the data tests'
    BUILDQUEUE_AUDIT_SCHEMA) is checked here by identifier(), for every command.
#}
{% macro generate_schema_name(custom_schema_name, node) %}
    {%- set source_schema = setting('source_schema') -%}
    {%- if node.resource_type == 'seed' -%}
        {{ source_schema }}
    {%- elif custom_schema_name is none -%}
        {{ identifier(target.schema, "the schema of target '" ~ target.name ~ "' (env var BUILDQUEUE_SCHEMA in profiles.yml)",
            "set BUILDQUEUE_SCHEMA (or the target's schema:) to a plain name, e.g. BUILDQUEUE_SCHEMA=monitoring", quote=false) }}
    {%- else -%}
        {{ identifier(custom_schema_name, "the data tests' schema (env var BUILDQUEUE_AUDIT_SCHEMA)",
            "set BUILDQUEUE_AUDIT_SCHEMA to a plain name or unset it (default dbt_test__audit)", quote=false) }}
    {%- endif -%}
{% endmacro %}
