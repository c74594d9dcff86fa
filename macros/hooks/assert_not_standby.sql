{#
    on-run-start check: refuse to write to a read-only standby (a streaming replica).
    The view, its grants and everything else dbt creates reach every replica by
    replication from the primary; written to a standby they would fail anyway, but only
    after dbt had started, with PostgreSQL's "cannot execute CREATE VIEW in a read-only
    transaction". One message instead, with the fix (docs/replicas.md). dbt test is
    refused too: its unit tests create tables (they fail on a standby), and the view's
    data tests belong where the view is deployed.
#}
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
