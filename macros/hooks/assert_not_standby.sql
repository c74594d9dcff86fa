{# on-run-start: refuse a read-only standby before dbt writes anything (docs/replicas.md). #}
{% macro assert_not_standby() %}
    {% if not execute or flags.WHICH not in ['run', 'build', 'seed', 'snapshot', 'test'] %}
        {{ return('') }}
    {% endif %}
    {% set in_recovery = run_query('select pg_is_in_recovery()').columns[0].values()[0] %}
    {% if in_recovery %}
        {{ exceptions.raise_compiler_error(
            "Database '" ~ target.database ~ "' on " ~ target.host ~ ":" ~ target.port
            ~ " is a read-only standby (a streaming replica): dbt " ~ flags.WHICH
            ~ " cannot write to it. Fix: run dbt against the primary (PGHOST/PGPORT); the view"
            ~ " and its grants reach every replica by replication (docs/replicas.md)."
        ) }}
    {% endif %}
    {{ return('') }}
{% endmacro %}
