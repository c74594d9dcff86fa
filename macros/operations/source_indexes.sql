{#
    What the view's plans need on the source tables, in one place: the indexes the spec's
    performance notes recommend, a covering index that answers a package's status by id
    from the index alone, and the extended statistics that keep the planner's estimates
    right. Used by the fixtures' DDL (crystal_forge_tables_ddl) and by the
    create_source_indexes operation. docs/performance.md shows the plans they give.
    A recommendation is a need (table, key columns in order, INCLUDE columns, predicate);
    `name` is only what we call the index when we have to create it: an existing index
    that serves the need, whatever its name, covers it (source_index_coverage_query).
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


{# A SQL string literal (doubles single quotes); `null` for none. #}
{% macro source_indexes_literal(value) %}
    {%- if value is none -%}
        null
    {%- else -%}
        '{{ value | string | replace("'", "''") }}'
    {%- endif -%}
{% endmacro %}


{# A text[] literal of the given strings. #}
{% macro source_indexes_text_array(values) %}
    {%- set items = [] -%}
    {%- for value in values -%}
        {%- do items.append(source_indexes_literal(value)) -%}
    {%- endfor -%}
    array[{{ items | join(', ') }}]::text[]
{%- endmacro %}


{# How an operator reads a recommendation: `derivations (id) include (status_id) where ...`. #}
{% macro source_index_label(index) %}
    {{- index.table }} ({{ index.columns | join(', ') }})
    {%- if index.include %} include ({{ index.include | join(', ') }}){% endif %}
    {%- if index.where %} where {{ index.where }}{% endif %}
{%- endmacro %}


{# The `create index` statement for one recommendation. #}
{% macro source_index_ddl(schema, index, concurrently=false) %}
    {{- 'create index ' ~ ('concurrently ' if concurrently else '') ~ 'if not exists ' ~ adapter.quote(index.name)
        ~ ' on ' ~ adapter.quote(schema) ~ '.' ~ adapter.quote(index.table) ~ ' (' ~ (index.columns | join(', ')) ~ ')'
        ~ ((' include (' ~ (index.include | join(', ')) ~ ')') if index.include else '')
        ~ ((' where ' ~ index.where) if index.where else '') -}}
{%- endmacro %}


{#
    One row per source_indexes() recommendation (position = its place in the list, from 1):
    whether its table exists, the existing index that covers it (name and definition) or
    NULL, whether a partial index would cover it if its predicate equals ours (so the caller
    knows a predicate comparison is needed), and what holds the recommendation's own name
    in the schema when something does.

    The rule, the one home of "covered": an index on the same table covers a
    recommendation when it is a valid, live btree index (primary key and unique constraint
    indexes included) without expression columns, its key columns use the default operator
    class and the column's own collation (otherwise the planner cannot use it for plain
    comparisons), its leading key columns are the recommendation's key columns in order,
    its key and INCLUDE columns contain the recommendation's INCLUDE columns, and it has
    either no predicate or the recommendation's predicate.

    Predicates are compared as PostgreSQL prints them (pg_get_expr of the stored predicate),
    never as we wrote them: `predicates` maps a position to our predicate as PostgreSQL
    prints it on that table (source_index_predicates). Without an entry, only indexes
    without a predicate cover a partial recommendation.
#}
{% macro source_index_coverage_query(schema, predicates={}) %}
with recommendations (position, table_name, index_name, key_columns, include_columns, has_predicate, printed_predicate) as (
    values
    {%- for index in source_indexes() %}
        ({{ loop.index }}, {{ source_indexes_literal(index.table) }}, {{ source_indexes_literal(index.name) }}, {{ source_indexes_text_array(index.columns) }}, {{ source_indexes_text_array(index.include or []) }}, {{ 'true' if index.where else 'false' }}, {{ source_indexes_literal(predicates.get(loop.index | string)) }}::text){{ ',' if not loop.last }}
    {%- endfor %}
),

recommended_tables as (
    select
        recommendations.*,
        to_regclass(quote_ident({{ source_indexes_literal(schema) }}) || '.' || quote_ident(recommendations.table_name)) as table_oid
    from recommendations
),

index_columns as (
    select
        pg_index.indexrelid,
        column_position,
        column_position < pg_index.indnkeyatts as is_key,
        column_attribute.attname::text as column_name,
        -- indclass and indcollation hold key columns only; NULL attribute: an expression
        coalesce(opclass.opcdefault and pg_index.indcollation[column_position] = column_attribute.attcollation, false) as is_plain_key
    from pg_index
    cross join lateral generate_series(0, pg_index.indnatts - 1) as column_position
    left join pg_attribute as column_attribute
        on pg_index.indrelid = column_attribute.attrelid
        and pg_index.indkey[column_position] = column_attribute.attnum
    left join pg_opclass as opclass
        on pg_index.indclass[column_position] = opclass.oid
    where pg_index.indrelid in (select recommended_tables.table_oid from recommended_tables)
),

existing_indexes as (
    select
        pg_index.indexrelid,
        pg_index.indrelid,
        index_class.relname::text as index_name,
        array(
            select index_columns.column_name
            from index_columns
            where index_columns.indexrelid = pg_index.indexrelid and index_columns.is_key
            order by index_columns.column_position
        ) as key_columns,
        array(
            select index_columns.column_name
            from index_columns
            where index_columns.indexrelid = pg_index.indexrelid and index_columns.column_name is not null
        ) as all_columns,
        pg_get_expr(pg_index.indpred, pg_index.indrelid) as predicate,
        access_method.amname = 'btree'
        and pg_index.indisvalid
        and pg_index.indislive
        and pg_index.indexprs is null
        and not exists (
            select
            from index_columns
            where index_columns.indexrelid = pg_index.indexrelid
                and index_columns.is_key
                and not index_columns.is_plain_key
        ) as is_usable,
        case index_constraint.contype
            when 'p' then 'primary key, '
            when 'u' then 'unique constraint, '
            else case when pg_index.indisunique then 'unique, ' else '' end
        end
        || substring(pg_get_indexdef(pg_index.indexrelid) from ' USING (.*)$')
        || case when pg_index.indisvalid then '' else ', INVALID' end as definition
    from pg_index
    inner join pg_class as index_class
        on pg_index.indexrelid = index_class.oid
    inner join pg_am as access_method
        on index_class.relam = access_method.oid
    left join pg_constraint as index_constraint
        on pg_index.indexrelid = index_constraint.conindid
        and index_constraint.contype in ('p', 'u')
    where pg_index.indrelid in (select recommended_tables.table_oid from recommended_tables)
),

final as (
    select
        recommended_tables.position,
        recommended_tables.table_oid is not null as table_exists,
        covering.index_name as covering_index,
        covering.definition as covering_definition,
        exists (
            select
            from existing_indexes as candidate
            where recommended_tables.has_predicate
                and recommended_tables.printed_predicate is null
                and candidate.indrelid = recommended_tables.table_oid
                and candidate.is_usable
                and candidate.key_columns[1:cardinality(recommended_tables.key_columns)] = recommended_tables.key_columns
                and recommended_tables.include_columns <@ candidate.all_columns
                and candidate.predicate is not null
        ) as has_partial_candidate,
        case
            when named.relkind in ('i', 'I') then 'index ' || named.relname || ' on ' || named_index_table.relname
                || ' (' || substring(pg_get_indexdef(named.oid) from ' USING (.*)$')
                || case when named_pg_index.indisvalid then '' else ', INVALID' end || ')'
            when named.oid is not null then
                case named.relkind when 'v' then 'view ' when 'm' then 'materialized view ' when 'S' then 'sequence ' else 'table ' end
                || named.relname
        end as name_taken_by,
        coalesce(not named_pg_index.indisvalid, false) as name_taken_by_invalid_index
    from recommended_tables
    left join lateral (
        select
            existing_indexes.index_name,
            existing_indexes.definition
        from existing_indexes
        where existing_indexes.indrelid = recommended_tables.table_oid
            and existing_indexes.is_usable
            and existing_indexes.key_columns[1:cardinality(recommended_tables.key_columns)] = recommended_tables.key_columns
            and recommended_tables.include_columns <@ existing_indexes.all_columns
            and (existing_indexes.predicate is null or existing_indexes.predicate = recommended_tables.printed_predicate)
        order by
            -- the closest fit first: no extra key columns, then by name for a stable report
            cardinality(existing_indexes.key_columns) = cardinality(recommended_tables.key_columns) desc,
            existing_indexes.index_name
        limit 1
    ) as covering on true
    left join pg_class as named
        on named.relnamespace = to_regnamespace(quote_ident({{ source_indexes_literal(schema) }}))
        and recommended_tables.index_name = named.relname
    left join pg_index as named_pg_index
        on named.oid = named_pg_index.indexrelid
    left join pg_class as named_index_table
        on named_pg_index.indrelid = named_index_table.oid
)

select * from final
{% endmacro %}


{#
    One row per source_statistics() entry (position from 1): whether its table exists, the
    existing statistics object that covers it (same table, no expressions, the same columns,
    at least our kinds) with its definition and effective statistics target (its own, else
    default_statistics_target), and what holds our name in the schema when something does.
#}
{% macro source_statistics_coverage_query(schema) %}
with recommendations (position, table_name, statistic_name, column_names, kinds) as (
    values
    {%- for statistic in source_statistics() %}
        ({{ loop.index }}, {{ source_indexes_literal(statistic.table) }}, {{ source_indexes_literal(statistic.name) }}, {{ source_indexes_text_array(statistic.columns | sort) }}, {{ source_indexes_text_array(statistic.kinds) }}){{ ',' if not loop.last }}
    {%- endfor %}
),

recommended_tables as (
    select
        recommendations.*,
        to_regclass(quote_ident({{ source_indexes_literal(schema) }}) || '.' || quote_ident(recommendations.table_name)) as table_oid
    from recommendations
),

existing_statistics as (
    select
        statistic.oid,
        statistic.stxrelid,
        statistic.stxnamespace,
        statistic.stxname::text as statistic_name,
        quote_ident(namespace.nspname) || '.' || quote_ident(statistic.stxname) as qualified_name,
        array(
            select key_attribute.attname::text
            from unnest(statistic.stxkeys) as key_column (attnum)
            inner join pg_attribute as key_attribute
                on statistic.stxrelid = key_attribute.attrelid
                and key_column.attnum = key_attribute.attnum
            order by key_attribute.attname::text
        ) as column_names,
        array(
            select
                case kind
                    when 'd' then 'ndistinct'
                    when 'f' then 'dependencies'
                    when 'm' then 'mcv'
                    else 'expressions'
                end
            from unnest(statistic.stxkind) as kind
        ) as kinds,
        -- PostgreSQL 17+ stores the default as NULL, older versions as -1
        coalesce(nullif(statistic.stxstattarget::integer, -1), current_setting('default_statistics_target')::integer) as statistics_target,
        statistic.stxexprs is not null as has_expressions
    from pg_statistic_ext as statistic
    inner join pg_namespace as namespace
        on statistic.stxnamespace = namespace.oid
),

described_statistics as (
    select
        existing_statistics.*,
        '(' || array_to_string(existing_statistics.kinds, ', ') || ') on '
        || case when existing_statistics.has_expressions then 'expressions' else array_to_string(existing_statistics.column_names, ', ') end
        as definition
    from existing_statistics
),

final as (
    select
        recommended_tables.position,
        recommended_tables.table_oid is not null as table_exists,
        covering.qualified_name as covering_statistic,
        covering.definition as covering_definition,
        covering.statistics_target as covering_target,
        case when named.oid is not null then named.qualified_name || ' (' || named.definition || ')' end as name_taken_by
    from recommended_tables
    left join lateral (
        select
            described_statistics.qualified_name,
            described_statistics.definition,
            described_statistics.statistics_target
        from described_statistics
        where described_statistics.stxrelid = recommended_tables.table_oid
            and not described_statistics.has_expressions
            and described_statistics.column_names = recommended_tables.column_names
            and described_statistics.kinds @> recommended_tables.kinds
        order by described_statistics.statistic_name = recommended_tables.statistic_name desc, described_statistics.qualified_name
        limit 1
    ) as covering on true
    left join described_statistics as named
        on named.stxnamespace = to_regnamespace(quote_ident({{ source_indexes_literal(schema) }}))
        and recommended_tables.statistic_name = named.statistic_name
)

select * from final
{% endmacro %}


{#
    The fixtures' DDL (crystal_forge_tables_ddl) for the lists above: each index and
    statistic is created only when nothing on its table covers it yet, by the same rule as
    the operation (a DO block runs source_index_coverage_query), so the example's tables
    carry no index that their own keys already provide.
#}
{% macro source_indexes_ddl(schema) %}
    {%- for index in source_indexes() %}
do $source_indexes$
begin
    if not exists (
        select from ({{ source_index_coverage_query(schema) }}) as coverage
        where coverage.position = {{ loop.index }} and coverage.covering_index is not null
    ) then
        {{ source_index_ddl(schema, index) }};
    end if;
end
$source_indexes$;
    {%- endfor %}
    {%- for statistic in source_statistics() %}
do $source_statistics$
begin
    if not exists (
        select from ({{ source_statistics_coverage_query(schema) }}) as coverage
        where coverage.position = {{ loop.index }} and coverage.covering_statistic is not null
    ) then
        {{ source_statistic_ddl(schema, statistic) }}
    end if;
end
$source_statistics$;
    {%- endfor %}
{% endmacro %}


{# `create statistics` with its statistics target, for one source_statistics() entry. #}
{% macro source_statistic_ddl(schema, statistic) %}
    {%- set name = adapter.quote(schema) ~ '.' ~ adapter.quote(statistic.name) -%}
create statistics if not exists {{ name }} ({{ statistic.kinds | join(', ') }}) on {{ statistic.columns | join(', ') }} from {{ adapter.quote(schema) }}.{{ adapter.quote(statistic.table) }}; alter statistics {{ name }} set statistics {{ statistic.target }};
{%- endmacro %}


{#
    Our predicates as PostgreSQL prints them on the real table, for the positions given:
    each is parsed on an empty temporary copy of the table's columns (`like`: same names,
    types and collations), as the predicate of an index on it, and read back with
    pg_get_expr, exactly as an existing index's predicate is read. Nothing outside this
    session's temporary schema is created; the copies go at commit and are dropped here.
#}
{% macro source_index_predicates(schema, positions) %}
    {% set indexes = source_indexes() %}
    {% set statements = [] %}
    {% set probes = [] %}
    {% for position in positions %}
        {% set index = indexes[position - 1] %}
        {% set probe = 'buildqueue_predicate_probe_' ~ position %}
        {% do probes.append(probe) %}
        {% do statements.append('create temporary table ' ~ probe ~ ' (like ' ~ adapter.quote(schema) ~ '.' ~ adapter.quote(index.table) ~ ') on commit drop') %}
        {% do statements.append('create index on pg_temp.' ~ probe ~ ' (' ~ (index.columns | join(', ')) ~ ') where ' ~ index.where) %}
    {% endfor %}
    {% set pairs = [] %}
    {% for position in positions %}
        {% do pairs.append(source_indexes_literal(position | string) ~ ', (select pg_get_expr(indpred, indrelid) from pg_index where indrelid = ' ~ source_indexes_literal('pg_temp.' ~ probes[loop.index0]) ~ '::regclass)') %}
    {% endfor %}
    {% do statements.append('select json_build_object(' ~ (pairs | join(', ')) ~ ')::text') %}
    {# one round trip: in autocommit mode the statements are one implicit transaction #}
    {% set printed = fromjson(run_query(statements | join(';\n')).rows[0][0]) %}
    {% for probe in probes %}
        {% do run_query('drop table if exists pg_temp.' ~ probe) %}
    {% endfor %}
    {{ return(printed) }}
{% endmacro %}


{# source_index_coverage_query's rows as a list of dicts, comparing predicates when needed. #}
{% macro source_index_coverage(schema) %}
    {% set rows = fromjson(run_query(coverage_as_json_query(source_index_coverage_query(schema))).rows[0][0]) %}
    {% set positions = rows | selectattr('has_partial_candidate') | map(attribute='position') | list %}
    {% if positions %}
        {% set predicates = source_index_predicates(schema, positions) %}
        {% set rows = fromjson(run_query(coverage_as_json_query(source_index_coverage_query(schema, predicates))).rows[0][0]) %}
    {% endif %}
    {{ return(rows) }}
{% endmacro %}


{# A coverage query's rows as one JSON array (text), in position order. #}
{% macro coverage_as_json_query(coverage_query) %}
    select coalesce(json_agg(coverage order by coverage.position), '[]')::text as coverage_json
    from ({{ coverage_query }}) as coverage
{% endmacro %}


{#
    One row: whether the schema exists, the tables of the list it lacks (comma-separated),
    and the schemas of this database that hold all of them.
#}
{% macro source_index_tables_query(schema, tables) %}
    select
        to_regnamespace(quote_ident({{ source_indexes_literal(schema) }})) is not null as schema_exists,
        coalesce((
            select string_agg(quote_ident(table_name), ', ' order by table_name)
            from unnest({{ source_indexes_text_array(tables) }}) as table_name
            where to_regclass(quote_ident({{ source_indexes_literal(schema) }}) || '.' || quote_ident(table_name)) is null
        ), '') as missing_tables,
        coalesce((
            select string_agg(quote_ident(namespace.nspname), ', ' order by namespace.nspname)
            from pg_namespace as namespace
            where (
                select count(*)
                from pg_class
                where pg_class.relnamespace = namespace.oid
                    and pg_class.relkind in ('r', 'p')
                    and pg_class.relname = any({{ source_indexes_text_array(tables) }})
            ) = {{ tables | length }}
        ), '') as holding_schemas
{% endmacro %}


{#
    Stops with one message when source_schema or a source table is missing in the target
    database, naming the schemas that do hold Crystal Forge's tables.
#}
{% macro assert_source_index_tables_exist(schema) %}
    {% set tables = (source_indexes() + source_statistics()) | map(attribute='table') | unique | list %}
    {% set row = run_query(source_index_tables_query(schema, tables)).rows[0] %}
    {% if row[0] and not row[1] %}
        {{ return('') }}
    {% endif %}
    {% set problem = 'schema "' ~ schema ~ '" does not exist' if not row[0] else 'schema "' ~ schema ~ '" has no table ' ~ row[1] %}
    {% set holders = row[2].split(', ') if row[2] else [] %}
    {{ exceptions.raise_compiler_error(
        "create_source_indexes: " ~ problem ~ " in database \"" ~ target.database ~ "\" (var source_schema); the operation indexes "
        ~ "the Crystal Forge tables the build reads, in that schema. "
        ~ ("Schemas in this database that hold them: " ~ (holders | join(', ')) ~ "." if holders else "No schema in this database holds them.")
        ~ " Fix: pass the same --vars '{source_schema: ...}' as the build, e.g. dbt run-operation create_source_indexes --target "
        ~ target.name ~ " --vars '{source_schema: " ~ (holders[0] if holders else 'public') ~ "}' --args '{dry_run: true}'."
    ) }}
{% endmacro %}


{#
    dbt run-operation create_source_indexes --vars '{source_schema: ...}' [--args '{concurrently: true, dry_run: true}']
    Compares what the view needs (source_indexes(), source_statistics()) with the indexes
    and statistics that exist on the tables in var source_schema, by definition, not by
    name, and prints one line per recommendation: `covered by <index> (<definition>)`, or
    `missing: <DDL>` (dry run) / `created: <name>`. Creates only what is missing, raises a
    covering statistic's target to ours, and analyzes a table whose statistics changed.
    concurrently: build indexes without blocking writers (each statement outside a
    transaction, which needs autocommit). dry_run: report and change nothing.
#}
{% macro create_source_indexes(concurrently=false, dry_run=false) %}
    {% set schema = setting('source_schema') %}
    {% if concurrently and not dry_run and not target.get('autocommit') %}
        {{ exceptions.raise_compiler_error("create_source_indexes: concurrently needs a connection in autocommit mode (create index concurrently cannot run inside a transaction), and target '" ~ target.name ~ "' has autocommit off. Fix: run this one command with BUILDQUEUE_AUTOCOMMIT=true (profiles.yml.example reads it; keep it off for builds, which replace the view atomically only inside a transaction), or run without concurrently.") }}
    {% endif %}
    {{ assert_source_index_tables_exist(schema) }}

    {% set indexes = source_indexes() %}
    {% set coverage = source_index_coverage(schema) %}
    {% set statistics = source_statistics() %}
    {% set statistics_coverage = fromjson(run_query(coverage_as_json_query(source_statistics_coverage_query(schema))).rows[0][0]) %}

    {# a missing index or statistic whose name something else holds cannot be created #}
    {% set conflicts = [] %}
    {% for row in coverage if not row.covering_index and row.name_taken_by %}
        {% set index = indexes[row.position - 1] %}
        {% set holder = adapter.quote(schema) ~ '.' ~ adapter.quote(index.name) %}
        {% do conflicts.append(source_index_label(index) ~ ' is missing, but its name ' ~ index.name ~ ' is taken by ' ~ row.name_taken_by
            ~ (
                ' (left by a failed or interrupted create index concurrently). Fix: drop index concurrently ' ~ holder
                if row.name_taken_by_invalid_index else
                ', which does not cover it. Fix: rename it (alter index ' ~ holder ~ ' rename to ...) or drop it if nothing needs it'
            )) %}
    {% endfor %}
    {% for row in statistics_coverage if not row.covering_statistic and row.name_taken_by %}
        {% set statistic = statistics[row.position - 1] %}
        {% do conflicts.append('statistics (' ~ (statistic.kinds | join(', ')) ~ ') on ' ~ statistic.table ~ ' (' ~ (statistic.columns | join(', '))
            ~ ') is missing, but its name is taken by ' ~ row.name_taken_by ~ ', which does not cover it. Fix: rename it (alter statistics '
            ~ adapter.quote(schema) ~ '.' ~ adapter.quote(statistic.name) ~ ' rename to ...) or drop it') %}
    {% endfor %}
    {% if conflicts and not dry_run %}
        {{ exceptions.raise_compiler_error(
            "create_source_indexes: nothing created. " ~ (conflicts | join('; ')) ~ "; then rerun (--args '{dry_run: true}' shows the plan)."
        ) }}
    {% endif %}

    {{ log('create_source_indexes: schema ' ~ schema ~ ' of database ' ~ target.database ~ (' (dry run: nothing is changed)' if dry_run else ''), info=true) }}
    {% set counts = {'covered': 0, 'missing': 0, 'created': 0} %}
    {% for row in coverage %}
        {% set index = indexes[row.position - 1] %}
        {% set label = '  ' ~ source_index_label(index) ~ ': ' %}
        {% if row.covering_index %}
            {% do counts.update({'covered': counts.covered + 1}) %}
            {{ log(label ~ 'covered by ' ~ row.covering_index ~ ' (' ~ row.covering_definition ~ ')', info=true) }}
        {% elif dry_run %}
            {% do counts.update({'missing': counts.missing + 1}) %}
            {{ log(label ~ 'missing: ' ~ source_index_ddl(schema, index, concurrently=concurrently) ~ ';'
                ~ ((' (cannot be created: the name is taken by ' ~ row.name_taken_by ~ ')') if row.name_taken_by else ''), info=true) }}
        {% else %}
            {#
                concurrently: no BEGIN (auto_begin=false) on an autocommit connection, so
                each statement runs on its own, outside any transaction
            #}
            {% call statement('create_source_indexes', auto_begin=not concurrently) %}
                {{ source_index_ddl(schema, index, concurrently=concurrently) }}
            {% endcall %}
            {% do counts.update({'created': counts.created + 1}) %}
            {{ log(label ~ 'created: ' ~ index.name, info=true) }}
        {% endif %}
    {% endfor %}

    {% set analyze = [] %}
    {% for row in statistics_coverage %}
        {% set statistic = statistics[row.position - 1] %}
        {% set qualified = adapter.quote(schema) ~ '.' ~ adapter.quote(statistic.name) %}
        {% set label = '  statistics (' ~ (statistic.kinds | join(', ')) ~ ') on ' ~ statistic.table ~ ' (' ~ (statistic.columns | join(', ')) ~ '), target ' ~ statistic.target ~ ': ' %}
        {% if row.covering_statistic %}
            {% set covered = 'covered by ' ~ row.covering_statistic ~ ' (' ~ row.covering_definition ~ ', statistics target ' ~ row.covering_target ~ ')' %}
            {% set raise_target = 'alter statistics ' ~ row.covering_statistic ~ ' set statistics ' ~ statistic.target %}
            {% if row.covering_target >= statistic.target %}
                {{ log(label ~ covered, info=true) }}
            {% elif dry_run %}
                {{ log(label ~ covered ~ '; target too low: ' ~ raise_target ~ ';', info=true) }}
                {% do analyze.append(statistic.table) %}
            {% else %}
                {% call statement('create_source_indexes', auto_begin=not concurrently) %}
                    {{ raise_target }}
                {% endcall %}
                {{ log(label ~ covered ~ '; statistics target raised to ' ~ statistic.target, info=true) }}
                {% do analyze.append(statistic.table) %}
            {% endif %}
        {% elif dry_run %}
            {{ log(label ~ 'missing: ' ~ source_statistic_ddl(schema, statistic)
                ~ ((' (cannot be created: the name is taken by ' ~ row.name_taken_by ~ ')') if row.name_taken_by else ''), info=true) }}
            {% do analyze.append(statistic.table) %}
        {% else %}
            {% for ddl in source_statistic_ddl(schema, statistic).split(';') if ddl.strip() %}
                {% call statement('create_source_indexes', auto_begin=not concurrently) %}
                    {{ ddl }}
                {% endcall %}
            {% endfor %}
            {{ log(label ~ 'created: ' ~ statistic.name, info=true) }}
            {% do analyze.append(statistic.table) %}
        {% endif %}
    {% endfor %}

    {# so a new or raised statistic takes effect now rather than at the next autovacuum #}
    {% for table in analyze | unique %}
        {% set ddl = 'analyze ' ~ adapter.quote(schema) ~ '.' ~ adapter.quote(table) %}
        {% if dry_run %}
            {{ log('  then: ' ~ ddl ~ ';', info=true) }}
        {% else %}
            {% call statement('create_source_indexes', auto_begin=not concurrently) %}
                {{ ddl }}
            {% endcall %}
            {{ log('  analyzed: ' ~ table, info=true) }}
        {% endif %}
    {% endfor %}

    {{ log('create_source_indexes: ' ~ indexes | length ~ ' indexes recommended: ' ~ counts.covered ~ ' covered by existing ones, '
        ~ ((counts.missing ~ ' missing') if dry_run else (counts.created ~ ' created')) ~ '.', info=true) }}
{% endmacro %}
