{# One row per (queued system, reservation of it). Rule: doc rule_system_reservations. #}
with

systems as (
    select * from {{ ref('int_systems_filtered_to_queue') }}
),

reservations as (
    select * from {{ ref('stg_crystal_forge__build_reservations') }}
),

package_builds as (
    select
        systems.nixos_id,
        reservations.derivation_id,
        reservations.worker_id,
        reservations.reserved_at,
        reservations.heartbeat_at
    from reservations
    inner join systems
        on reservations.nixos_derivation_id = systems.nixos_id
),

system_builds as (
    select
        systems.nixos_id,
        reservations.derivation_id,
        reservations.worker_id,
        reservations.reserved_at,
        reservations.heartbeat_at
    from reservations
    inner join systems
        on reservations.derivation_id = systems.nixos_id
    {# a row matching both ways is already in package_builds #}
    where reservations.nixos_derivation_id is distinct from reservations.derivation_id
),

final as (
    select * from package_builds
    union all
    select * from system_builds
)

select * from final
