{#
    on-run-start check: every source table the view reads exists, so a wrong
    source_schema or a database without Crystal Forge's tables fails with one message
    that says how to fix it instead of a "relation does not exist" from deep in a view.
    Skipped when the example fixtures are being loaded (they create the tables) and for
    commands that never touch the sources.
#}
{% macro assert_sources_exist() %}
    {% if not execute or flags.WHICH not in ['run', 'build', 'test'] or setting('load_fixtures') %}
        {{ return('') }}
    {% endif %}
    {% set schema = setting('source_schema') %}
    {% set missing = [] %}
    {% for source_node in graph.sources.values() if source_node.package_name == project_name %}
        {% if source_node.name != 'derivation_statuses' %}
            {% set relation = adapter.get_relation(database=target.database, schema=schema, identifier=source_node.identifier) %}
            {% if relation is none %}
                {% do missing.append(schema ~ '.' ~ source_node.identifier) %}
            {% endif %}
        {% endif %}
    {% endfor %}
    {% if missing %}
        {{ exceptions.raise_compiler_error(
            "Missing Crystal Forge source table(s): " ~ (missing | join(', ')) ~ " in database '"
            ~ target.database ~ "'. Fix: point var source_schema at the schema that holds them "
            ~ "(e.g. --vars '{source_schema: public}'), or load the example fixtures first "
            ~ "(dbt seed --vars '{load_fixtures: true}', or ./run demo)."
        ) }}
    {% endif %}
    {{ return('') }}
{% endmacro %}
