{# The one way the SQL reads a project var (_macros.yml: setting); nothing else calls var() for these. #}
{% macro setting(name) %}
    {% set roles = status_roles() %}
    {% if name in roles %}
        {% set ids = resolve_statuses()[name].ids %}
        {{ return(ids if roles[name].many else ids[0]) }}
    {% endif %}
    {{ return(validated_var(name)) }}
{% endmacro %}

{# Validated integer-list settings, joined, rendered for SQL `in (...)`. #}
{% macro setting_in_list(name) %}
    {% set ids = [] %}
    {% for each in [name] + (varargs | list) %}
        {% do ids.extend(setting(each)) %}
    {% endfor %}
    {{ return('(' ~ (ids | unique | join(', ')) ~ ')') }}
{% endmacro %}
