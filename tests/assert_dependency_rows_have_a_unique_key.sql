{#
    derivation_dependencies without a unique key on (derivation_id, depends_on_id), as
    Crystal Forge's primary key provides. The view stays correct without one, but
    PostgreSQL then de-duplicates the whole table on every refresh (2.8 s instead of 0.3 s
    at 1000 systems x 1000 packages, and growing with history); with the key it proves the
    rows unique and skips that step (docs/performance.md). Returns one row when missing.
#}
{{ config(severity='warn') }}

with

unique_keys as (
    select
        array(
            select pg_attribute.attname::text
            from pg_attribute
            where
                pg_attribute.attrelid = pg_index.indrelid
                and pg_attribute.attnum = any(pg_index.indkey)
            order by 1
        ) as key_columns
    from pg_index
    where
        pg_index.indrelid = '{{ source("crystal_forge", "derivation_dependencies") }}'::regclass
        and pg_index.indisunique
        and pg_index.indpred is null
),

final as (
    select
        '{{ source("crystal_forge", "derivation_dependencies") }}' as source_table,
        'no unique key on (derivation_id, depends_on_id)' as problem
    where not exists (
        select 1
        from unique_keys
        where unique_keys.key_columns = array['depends_on_id', 'derivation_id']
    )
)

select * from final
