{#
    Models and other seeds go to the target's schema. The example fixtures (seeds/example)
    go to var source_schema, because their post-hook publishes them as the very tables the
    sources read.
#}
{% macro generate_schema_name(custom_schema_name, node) %}
    {%- if node.resource_type == 'seed' and node.fqn[1] == 'example' -%}
        {{ setting('source_schema') }}
    {%- elif custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{% endmacro %}
