{# A project var checked against its form (_macros.yml: validated_var). #}
{% macro validated_var(name, check_pair=true) %}
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
        'view_replace_lock_timeout': 'interval',
        'view_replace_lock_retries': 'count',
    } %}
    {% if name not in forms %}
        {{ exceptions.raise_compiler_error("setting(): unknown setting '" ~ name ~ "'. Known settings: " ~ (forms.keys() | list | join(', '))) }}
    {% endif %}
    {% set form, value, fix = forms[name], var(name), "--vars '{" ~ name ~ ": ...}'" %}
    {% set item_form = form | replace(' list', '') %}
    {% set is_list = value is iterable and value is not string and value is not mapping %}
    {# lists that may be empty: identifiers, and the system-build statuses ([] is the spec's filter) #}
    {% set may_be_empty = item_form == 'identifier' or name in ['system_build_statuses', 'system_build_status_ids'] %}
    {% set ns = namespace(ok=form == item_form or (is_list and (value or may_be_empty)), items=[]) %}
    {% for item in ([value] if form == item_form else value if is_list else []) %}
        {% set seconds = interval_seconds(item) if item_form == 'interval' else none %}
        {% if item_form == 'identifier' %}
            {% do ns.items.append(identifier(item, "var '" ~ name ~ "'", "set it in dbt_project.yml (vars:) or in " ~ fix, quote=false)) %}
        {% elif item_form in ['integer', 'count'] and item is not boolean and modules.re.fullmatch('\\s*\\d{1,9}\\s*', item | string) %}
            {% do ns.items.append(item | int) %}
        {% elif (item_form == 'name' and item is string and item | trim) or (seconds and 0.001 <= seconds <= 36525 * 86400) %}
            {% do ns.items.append(item) %}
        {% elif item_form == 'boolean' and (item | string | lower) in ['true', 'false'] %}
            {% do ns.items.append((item | string | lower) == 'true') %}
        {% else %}
            {% set ns.ok = false %}
        {% endif %}
    {% endfor %}
    {% if not ns.ok %}
        {% set examples = {
            'identifier list': "a list of names such as [grafana_reader]",
            'integer': "a non-negative integer id such as 6",
            'count': "a non-negative whole number such as 500",
            'integer list': "a non-empty list of integer ids such as [5, 12]",
            'name': "a status name from derivation_statuses such as build-complete",
            'name list': "a non-empty list of status names such as [dry-run-complete, scheduled]",
            'interval': "an interval longer than zero (at least 1 millisecond) and at most 100 years, such as '5 minutes', '90 seconds' or '00:05:00'",
            'boolean': "true or false",
        } %}
        {{ exceptions.raise_compiler_error(
            "Invalid value for var '" ~ name ~ "': " ~ (value | tojson) ~ ". Expected " ~ examples[form]
            ~ ". Fix it in dbt_project.yml (vars:) or in " ~ fix ~ "."
        ) }}
    {% endif %}
    {% if check_pair and name in ['queue_sample_interval', 'queue_sample_retention'] %}
        {% set interval, retention = validated_var('queue_sample_interval', false), validated_var('queue_sample_retention', false) %}
        {% if interval_seconds(retention) <= interval_seconds(interval) %}
            {{ exceptions.raise_compiler_error(
                "Var queue_sample_retention (" ~ (retention | tojson) ~ ") must be longer than var queue_sample_interval ("
                ~ (interval | tojson) ~ "): each sample run would add its sample and delete it at once. Fix: set both "
                ~ "in dbt_project.yml (vars:) or in --vars, e.g. --vars '{queue_sample_interval: 1 minute, queue_sample_retention: 30 days}'."
            ) }}
        {% endif %}
    {% endif %}
    {{ return(ns.items if form != item_form else ns.items[0]) }}
{% endmacro %}

{# Seconds in '1 hour 30 minutes' or hh:mm[:ss]; none otherwise (months vary). #}
{% macro interval_seconds(value) %}
    {% set unit = '(microseconds?|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|days?|weeks?)' %}
    {% set text = value | lower if value is string else '' %}
    {% set clock = modules.re.fullmatch('\\s*(\\d{1,3}):(\\d{2})(:\\d{2}(\\.\\d+)?)?\\s*', text) %}
    {% if clock %}
        {{ return((clock.group(1) | int) * 3600 + (clock.group(2) | int) * 60 + ((clock.group(3) or ':0')[1:] | float)) }}
    {% elif not modules.re.fullmatch('(\\s*\\d+(\\.\\d+)?\\s*' ~ unit ~ ')+\\s*', text) %}
        {{ return(none) }}
    {% endif %}
    {% set factors = {'mic': 0.000001, 'mil': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800} %}
    {% set ns = namespace(seconds=0) %}
    {% for amount, name in modules.re.findall('(\\d+(?:\\.\\d+)?)\\s*' ~ unit, text) %}
        {% set ns.seconds = ns.seconds + (amount | float) * factors[name[:3] if name[:3] in ['mic', 'mil'] else name[0]] %}
    {% endfor %}
    {{ return(ns.seconds) }}
{% endmacro %}
