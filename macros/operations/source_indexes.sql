{#
    What the view's plans need on the source tables, in one place: the indexes the spec's
    performance notes recommend, a covering index that answers a package's status by id
    from the index alone, and the extended statistics that keep the planner's estimates
    right. Used by the fixtures' DDL (crystal_forge_tables_ddl) and by the
    create_source_indexes operation. docs/performance.md shows the plans they give.
#}
{% macro source_indexes() %}
    {{ return([
        {'table': 'derivations', 'name': 'idx_derivations_type_status', 'columns': ['derivation_type', 'status_id']},
        {'table': 'derivation_dependencies', 'name': 'idx_derivation_dependencies_derivation_id', 'columns': ['derivation_id']},
        {'table': 'build_reservations', 'name': 'idx_build_reservations_nixos_derivation_id', 'columns': ['nixos_derivation_id']},
        {'table': 'build_reservations', 'name': 'idx_build_reservations_heartbeat_at', 'columns': ['heartbeat_at']},
        {'table': 'derivations', 'name': 'idx_derivations_package_status', 'columns': ['id'], 'include': ['status_id'], 'where': "derivation_type = 'package'"},
    ]) }}
{% endmacro %}


{#
    Extended statistics. derivation_type and status_id are correlated (only systems are
    ever 'scheduled'), so without an MCV list over both the planner multiplies their
    selectivities and expects a tenth of the queued systems, then sizes every later join
    for a tenth of the rows. `target` is the statistic's own statistics target: at the
    default (100) ANALYZE samples 30,000 rows, and once finished history outnumbers the
    queue (1,000 queued systems among 2.3 million derivations) the queued (type, status)
    pairs fall out of the MCV list: the estimate drops to 70 systems and the planner
    picks a serial plan, twice as slow. 1000 samples 300,000 rows and keeps them.
#}
{% macro source_statistics() %}
    {{ return([
        {'table': 'derivations', 'name': 'stx_derivations_type_status', 'kinds': ['mcv', 'dependencies'], 'columns': ['derivation_type', 'status_id'], 'target': 1000},
    ]) }}
{% endmacro %}


{# `create index|statistics if not exists` statements for the lists above, one per line. #}
{% macro source_indexes_ddl(schema, concurrently=false) %}
    {%- for index in source_indexes() %}
create index {{ 'concurrently ' if concurrently }}if not exists {{ adapter.quote(index.name) }}
    on {{ adapter.quote(schema) }}.{{ adapter.quote(index.table) }} ({{ index.columns | join(', ') }})
    {%- if index.include %} include ({{ index.include | join(', ') }}){% endif %}
    {%- if index.where %} where {{ index.where }}{% endif %};
    {%- endfor %}
    {%- for statistic in source_statistics() %}
create statistics if not exists {{ adapter.quote(schema) }}.{{ adapter.quote(statistic.name) }} ({{ statistic.kinds | join(', ') }})
    on {{ statistic.columns | join(', ') }} from {{ adapter.quote(schema) }}.{{ adapter.quote(statistic.table) }};
alter statistics {{ adapter.quote(schema) }}.{{ adapter.quote(statistic.name) }} set statistics {{ statistic.target }};
    {%- endfor %}
{% endmacro %}


{#
    dbt run-operation create_source_indexes [--args '{concurrently: true, dry_run: true}']
    Creates whichever of the indexes and statistics are missing on the source tables
    (idempotent), then analyzes the tables that carry statistics so they take effect now
    rather than at the next autovacuum. concurrently: build indexes without blocking
    writers (for a live database; each index runs outside a transaction). dry_run: print
    the DDL and change nothing.
#}
{% macro create_source_indexes(concurrently=false, dry_run=false, schema=none) %}
    {% set schema = schema or setting('source_schema') %}
    {% if concurrently and not dry_run and not target.get('autocommit') %}
        {{ exceptions.raise_compiler_error("create_source_indexes: concurrently needs a connection in autocommit mode (create index concurrently cannot run inside a transaction), and target '" ~ target.name ~ "' has autocommit off. Fix: run this one command with BUILDQUEUE_AUTOCOMMIT=true (profiles.yml.example reads it; keep it off for builds, which replace the view atomically only inside a transaction), or run without concurrently.") }}
    {% endif %}
    {% set statements = source_indexes_ddl(schema, concurrently=concurrently).strip().split(';') %}
    {% for table in source_statistics() | map(attribute='table') | unique %}
        {% do statements.append('analyze ' ~ adapter.quote(schema) ~ '.' ~ adapter.quote(table)) %}
    {% endfor %}
    {% for ddl in statements if ddl.strip() %}
        {% if dry_run %}
            {{ log(ddl.strip() ~ ';', info=true) }}
        {% else %}
            {#
                concurrently: no BEGIN (auto_begin=false) on an autocommit connection, so
                each statement runs on its own, outside any transaction
            #}
            {% call statement('create_source_indexes', auto_begin=not concurrently) %}
                {{ ddl }}
            {% endcall %}
            {{ log('ok: ' ~ ddl.strip().split('\n')[0], info=true) }}
        {% endif %}
    {% endfor %}
{% endmacro %}
