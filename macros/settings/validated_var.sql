{#
    A project var checked against its documented form: the raw reader behind setting()
    (setting.sql). `forms` is the list of known settings; pytests/test_one_home.py checks
    it against the vars of dbt_project.yml.
#}
{% macro validated_var(name) %}
    {% set forms = {
        'source_schema': 'identifier',
        'queued_system_statuses': 'name list',
        'system_build_statuses': 'name list',
        'build_complete_status': 'name',
        'build_in_progress_status': 'name',
        'cache_pushed_status': 'name',
        'queued_system_status_ids': 'integer list',
        'system_build_status_ids': 'integer list',
        'build_complete_status_id': 'integer',
        'build_in_progress_status_id': 'integer',
        'cache_pushed_status_id': 'integer',
        'stale_heartbeat_threshold': 'interval',
        'stuck_building_threshold': 'interval',
        'queue_stall_threshold': 'interval',
        'packages_remaining_threshold': 'count',
        'load_fixtures': 'boolean',
        'production_targets': 'identifier list',
        'view_reader_roles': 'identifier list',
        'queue_sample_interval': 'interval',
        'queue_sample_retention': 'interval',
        'queue_growth_window': 'interval',
    } %}
    {% if name not in forms %}
        {{ exceptions.raise_compiler_error("setting(): unknown setting '" ~ name ~ "'. Known settings: " ~ (forms.keys() | list | join(', '))) }}
    {% endif %}
    {% set form = forms[name] %}
    {# lists that may be empty: [] turns the system-build statuses off (the spec's filter) #}
    {% set may_be_empty = ['system_build_statuses', 'system_build_status_ids'] %}
    {% set value = var(name) %}
    {% set re = modules.re %}
    {% set identifier = '^[A-Za-z_][A-Za-z0-9_$]{0,62}$' %}
    {% set unit = '(microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|days?|weeks?)' %}
    {% set interval = '^\\s*(\\d+(\\.\\d+)?\\s*' ~ unit ~ '\\s*)+$|^\\s*\\d{1,3}:\\d{2}(:\\d{2}(\\.\\d+)?)?\\s*$' %}
    {% set ns = namespace(ok=true, result=value) %}

    {% if form in ['integer', 'count'] %}
        {% if value is boolean or (value | string) is none or not re.match('^\\s*\\d{1,9}\\s*$', value | string) %}
            {% set ns.ok = false %}
        {% else %}
            {% set ns.result = value | int %}
        {% endif %}
    {% elif form == 'integer list' %}
        {% if value is string or value is mapping or value is not iterable or ((value | length) == 0 and name not in may_be_empty) %}
            {% set ns.ok = false %}
        {% else %}
            {% set ns.result = [] %}
            {% for item in value %}
                {% if item is boolean or not re.match('^\\s*\\d{1,9}\\s*$', item | string) %}
                    {% set ns.ok = false %}
                {% else %}
                    {% do ns.result.append(item | int) %}
                {% endif %}
            {% endfor %}
        {% endif %}
    {% elif form == 'name' %}
        {% set ns.ok = value is string and (value | trim | length) > 0 %}
    {% elif form == 'name list' %}
        {% if value is string or value is mapping or value is not iterable or ((value | length) == 0 and name not in may_be_empty) %}
            {% set ns.ok = false %}
        {% else %}
            {% for item in value %}
                {% if not (item is string and (item | trim | length) > 0) %}
                    {% set ns.ok = false %}
                {% endif %}
            {% endfor %}
        {% endif %}
    {% elif form == 'identifier' %}
        {% set ns.ok = value is string and re.match(identifier, value) is not none %}
    {% elif form == 'identifier list' %}
        {% if value is string or value is mapping or value is not iterable %}
            {% set ns.ok = false %}
        {% else %}
            {% for item in value %}
                {% if not (item is string and re.match(identifier, item)) %}
                    {% set ns.ok = false %}
                {% endif %}
            {% endfor %}
        {% endif %}
    {% elif form == 'interval' %}
        {% set ns.ok = value is string and re.match(interval, value, re.IGNORECASE) is not none %}
    {% elif form == 'boolean' %}
        {% if value is boolean %}
            {% set ns.result = value %}
        {% elif (value | string | lower) in ['true', 'false'] %}
            {% set ns.result = (value | string | lower) == 'true' %}
        {% else %}
            {% set ns.ok = false %}
        {% endif %}
    {% endif %}

    {% if not ns.ok %}
        {% set examples = {
            'identifier': "a SQL identifier such as public (letters, digits, _ and $; at most 63 characters)",
            'identifier list': "a list of SQL identifiers such as [grafana_reader]",
            'integer': "a non-negative integer id such as 6",
            'count': "a non-negative whole number such as 500",
            'integer list': "a non-empty list of integer ids such as [5, 12]",
            'name': "a status name from derivation_statuses such as build-complete",
            'name list': "a non-empty list of status names such as [dry-run-complete, scheduled]",
            'interval': "a PostgreSQL interval such as '5 minutes', '90 seconds' or '00:05:00'",
            'boolean': "true or false",
        } %}
        {{ exceptions.raise_compiler_error(
            "Invalid value for var '" ~ name ~ "': " ~ (value | tojson) ~ ". Expected " ~ examples[form]
            ~ ". Fix it in dbt_project.yml (vars:) or in --vars, e.g. --vars '{" ~ name ~ ": ...}'."
        ) }}
    {% endif %}
    {{ return(ns.result) }}
{% endmacro %}
