{# on-run-start (run, build): resolves the statuses once and prints the mapping in one line. #}
{% macro log_status_mapping() %}
    {% if not execute or flags.WHICH not in ['run', 'build'] %}
        {{ return('') }}
    {% endif %}
    {% if setting('load_fixtures') and missing_source_tables(['derivation_statuses']) %}
        {{ return('') }}
    {% endif %}
    {{ log(describe_status_mapping(resolve_statuses()), info=true) }}
    {{ return('') }}
{% endmacro %}

{# The mapping in one line, e.g. "queued = dry-run-complete 5 (scheduled: not in the table, skipped); ..." #}
{% macro describe_status_mapping(resolved) %}
    {% set parts = [] %}
    {% set sources = [] %}
    {% for id_var, role in status_roles().items() %}
        {% set entry = resolved[id_var] %}
        {% if entry.source == 'override' %}
            {% set text = role.label ~ ' = ' ~ (entry.ids | join(', ')) ~ ' (' ~ id_var ~ ')' %}
        {% else %}
            {% set found = [] %}
            {% for name in entry.names %}
                {% do found.append(name ~ ' ' ~ entry.ids[loop.index0]) %}
            {% endfor %}
            {% set text = role.label ~ ' = ' ~ ((found | join(', ')) or 'none') %}
            {% if entry.skipped %}
                {% set text = text ~ ' (' ~ (entry.skipped | join(', ')) ~ ': not in the table, skipped)' %}
            {% endif %}
            {% if entry.source not in sources %}
                {% do sources.append(entry.source) %}
            {% endif %}
        {% endif %}
        {% do parts.append(text) %}
    {% endfor %}
    {% set origin = ' (' ~ (sources | join(', ')) ~ ')' if sources else ' (explicit ids)' %}
    {{ return('Crystal Forge statuses' ~ origin ~ ': ' ~ (parts | join('; '))) }}
{% endmacro %}
