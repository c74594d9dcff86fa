{# on-run-start: a missing source table stops the run with one message and the fix. #}
{% macro assert_sources_exist() %}
    {% if not execute or flags.WHICH not in ['run', 'build', 'test'] or setting('load_fixtures') %}
        {{ return('') }}
    {% endif %}
    {% set tables = [] %}
    {% for source_node in graph.sources.values() if source_node.package_name == project_name and source_node.name != 'derivation_statuses' %}
        {% do tables.append(source_node.identifier) %}
    {% endfor %}
    {% set missing = missing_source_tables(tables) %}
    {% if missing %}
        {{ exceptions.raise_compiler_error(
            "Missing Crystal Forge source table(s): " ~ (missing | join(', ')) ~ " in database '"
            ~ target.database ~ "'. Fix: point var source_schema at the schema that holds them "
            ~ "(names are case-sensitive, e.g. --vars '{source_schema: public}'), or load the example "
            ~ "fixtures first (dbt seed --vars '{load_fixtures: true}', or ./run demo)."
        ) }}
    {% endif %}
    {{ return('') }}
{% endmacro %}

{# Missing tables as schema.table, by exact name (get_relation stops at "approximate match"). #}
{% macro missing_source_tables(tables) %}
    {% set schema = setting('source_schema') %}
    {% set query %}
        select format('%s.%s', {{ "'" ~ schema | replace("'", "''") ~ "'" }}, name)
        from unnest(array['{{ tables | join("', '") }}']::text[]) as name
        where to_regclass(format('%I.%I', {{ "'" ~ schema | replace("'", "''") ~ "'" }}, name)) is null
    {% endset %}
    {{ return(run_query(query).columns[0].values() | list) }}
{% endmacro %}
