{#
    Post-hook of the published view: lets each role in var view_reader_roles look up
    objects in the view's schema. `grants` gives SELECT on the view itself; without
    USAGE on its schema a role still cannot name the view. Nothing else is granted:
    the view's owner reads the source tables on the readers' behalf, so a reader needs
    no privilege on them.
#}
{% macro grant_schema_usage(relation) %}
    {%- set statements = [] -%}
    {%- for role in setting('view_reader_roles') -%}
        {%- do statements.append(
            'grant usage on schema ' ~ adapter.quote(relation.schema) ~ ' to ' ~ adapter.quote(role)
        ) -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
{% endmacro %}
