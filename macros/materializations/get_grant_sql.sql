{# dbt-postgres writes grantees bare (Grafana_Reader became grafana_reader): quote them, as revoke does. #}
{% macro postgres__get_grant_sql(relation, privilege, grantees) %}
    {%- set quoted = [] -%}
    {%- for grantee in grantees -%}
        {%- do quoted.append(adapter.quote(grantee)) -%}
    {%- endfor -%}
    grant {{ privilege }} on {{ relation.render() }} to {{ quoted | join(', ') }}
{% endmacro %}
