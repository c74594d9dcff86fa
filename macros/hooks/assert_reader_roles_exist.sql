{# on-run-start: a missing reader role stops the run with the `create role` line to run. #}
{% macro assert_reader_roles_exist() %}
    {% set roles = setting('view_reader_roles') %}
    {% if not execute or flags.WHICH not in ['run', 'build'] or not roles %}
        {{ return('') }}
    {% endif %}
    {% set missing = run_query(missing_reader_roles_query(roles)).columns[0].values() | list %}
    {% if missing %}
        {% set creates = [] %}
        {% for role in missing %}
            {% do creates.append("psql -c 'create role " ~ adapter.quote(role) ~ " login'") %}
        {% endfor %}
        {{ exceptions.raise_compiler_error(
            "Reader role(s) " ~ (missing | join(', ')) ~ " (var view_reader_roles) do not exist on the "
            ~ "server of database '" ~ target.database ~ "'. Fix: create them first, e.g. "
            ~ (creates | join('; ')) ~ " (then give each a password for Grafana), "
            ~ "or leave them out of view_reader_roles."
        ) }}
    {% endif %}
    {{ return('') }}
{% endmacro %}

{# The roles of the list that do not exist on the server, one a row. #}
{% macro missing_reader_roles_query(roles) %}
    select wanted.rolname
    from unnest(array['{{ roles | map('replace', "'", "''") | join("', '") }}']::text[]) as wanted (rolname)
    where not exists (select 1 from pg_roles where pg_roles.rolname = wanted.rolname)
{% endmacro %}
