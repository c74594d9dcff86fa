{#
    Models and other seeds go to the target's schema. The example fixtures (seeds/example)
    go to var source_schema, because their post-hook publishes them as the very tables the
    sources read.
    dbt names every node here while parsing, before it creates a schema: so every schema
    name (and the database name, which dbt writes quoted into every relation) is checked here.
#}
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
