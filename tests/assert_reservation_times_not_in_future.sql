{#
    Reservations stamped in the future: a worker's clock is ahead of the database's.
    Such a heartbeat never looks stale, so a dead worker would go unnoticed until the
    database's clock catches up.
#}
{{ config(severity='warn') }}

with

reservations as (
    select * from {{ ref('stg_crystal_forge__build_reservations') }}
),

final as (
    select
        derivation_id,
        worker_id,
        nixos_derivation_id,
        reserved_at,
        heartbeat_at,
        greatest(heartbeat_at, reserved_at) - now() as ahead_by
    from reservations
    where heartbeat_at > now() or reserved_at > now()
)

select * from final
