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
        per system (lateral): its distinct dependencies, in package id order. A few
        hundred rows at a time are sorted and de-duplicated in memory, instead of a
        million (system, package) pairs spilling a hash to disk; in id order, the package
        lookups below walk the index forwards.
    #}
    cross join lateral (
        select distinct dependencies.depends_on_derivation_id as package_id
        from dependencies
        where dependencies.derivation_id = systems.nixos_id
        order by package_id
    ) as system_packages
),

final as (
    select
        system_dependencies.nixos_id,
        system_dependencies.package_id,
        packages.status_id as package_status_id
    from system_dependencies
    {#
        each dependency looks its package up by id (the primary key, so at most one row;
        `limit 1` only keeps the planner from turning the lookup into a hash of every
        derivation, finished history included). The lookups are memoized and read the
        covering index idx_derivations_package_status, so the cost follows the queued
        systems' dependencies, not the size of the table. Inner (cross) join on type:
        dependencies on systems or on missing rows are not packages.
    #}
    cross join lateral (
        select derivations.status_id
        from derivations
        where
            derivations.derivation_id = system_dependencies.package_id
            and derivations.derivation_type = 'package'
        limit 1
    ) as packages
)

select * from final
