{# The one way the SQL reads a project var (_macros.yml: setting); nothing else calls var() for these. #}
{% macro setting(name) %}
    {% set roles = status_roles() %}
    {% if name in roles %}
        {% set ids = resolve_statuses()[name].ids %}
        {{ return(ids if roles[name].many else ids[0]) }}
    {% endif %}
    {{ return(validated_var(name)) }}
{% endmacro %}

{# A validated integer list rendered for SQL `in (...)`. #}
{% macro setting_in_list(name) %}
    {{ return('(' ~ (setting(name) | join(', ')) ~ ')') }}
{% endmacro %}
