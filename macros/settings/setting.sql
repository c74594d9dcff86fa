{#
    The one way the SQL reads a project var: setting(name) validates the value against the
    form documented in macros/_macros.yml (validated_var) and fails at compile time with a message that
    names the var, the value given and the form expected. Nothing else calls var() for
    these names, so a typo in --vars can never reach the database as broken SQL.
    The status ids (queued_system_status_ids, build_complete_status_id, ...) are those of
    the statuses their name vars name, looked up in derivation_statuses
    (status_ids.sql, next to this file), unless the id var itself is given as an explicit override.
#}
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
