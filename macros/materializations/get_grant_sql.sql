{#
    dbt-postgres' grant statement writes grantees unquoted, so PostgreSQL folds
    Grafana_Reader to grafana_reader, while dbt's revoke and the USAGE grant
    (grant_schema_usage) quote them. Here every grantee is double-quoted as well.
#}
{% macro postgres__get_grant_sql(relation, privilege, grantees) %}
    {%- set quoted = [] -%}
    {%- for grantee in grantees -%}
        {%- do quoted.append(adapter.quote(grantee)) -%}
    {%- endfor -%}
    grant {{ privilege }} on {{ relation.render() }} to {{ quoted | join(', ') }}
{% endmacro %}
