{#
    Reservations missing their worker or a timestamp. The view copes (a NULL worker is
    not counted, a NULL heartbeat is not stale, NULL times are left out of min/max),
    but a worker writing such rows is broken.
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
        concat_ws(
            ', ',
            case when worker_id is null then 'worker_id is null' end,
            case when reserved_at is null then 'reserved_at is null' end,
            case when heartbeat_at is null then 'heartbeat_at is null' end
        ) as problem
    from reservations
    where worker_id is null or reserved_at is null or heartbeat_at is null
)

select * from final
