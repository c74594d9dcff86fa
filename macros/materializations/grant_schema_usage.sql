{# Post-hook of the view: USAGE on its schema for view_reader_roles (SELECT comes from `grants`). #}
{% macro grant_schema_usage(relation) %}
    {%- set statements = [] -%}
    {%- for role in setting('view_reader_roles') -%}
        {%- do statements.append(
            'grant usage on schema ' ~ adapter.quote(relation.schema) ~ ' to ' ~ adapter.quote(role)
        ) -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{% endmacro %}
