{# One row per (queued system, package it depends on). Rule: doc rule_system_packages. #}
with

systems as (
    select * from {{ ref('int_systems_filtered_to_queue') }}
),

dependencies as (
    select * from {{ ref('stg_crystal_forge__derivation_dependencies') }}
),

derivations as (
    select * from {{ ref('stg_crystal_forge__derivations') }}
),

system_dependencies as (
    select
        systems.nixos_id,
        system_packages.package_id
    from systems
    {#
        per system (lateral): its distinct dependencies, read in primary-key order from
        the (derivation_id, depends_on_id) index, so a duplicated row counts once without
        sorting or hashing the whole fleet's dependencies at once
    #}
    cross join lateral (
        select distinct dependencies.depends_on_derivation_id as package_id
        from dependencies
        where dependencies.derivation_id = systems.nixos_id
    ) as system_packages
),

final as (
    select
        system_dependencies.nixos_id,
        system_dependencies.package_id,
        packages.status_id as package_status_id
    from system_dependencies
    {# inner join on type: dependencies on systems or on missing rows are not packages #}
    inner join derivations as packages
        on
            system_dependencies.package_id = packages.derivation_id
            and packages.derivation_type = 'package'
)

select * from final
