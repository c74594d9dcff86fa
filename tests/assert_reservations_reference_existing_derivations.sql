{#
    Reservations of a derivation that does not exist, or for a NixOS system that does
    not exist. The first still counts as a worker of its system; the second belongs to
    no queued system and is invisible in the view, so it is named here.
#}
{{ config(severity='warn') }}

with

reservations as (
    select * from {{ ref('stg_crystal_forge__build_reservations') }}
),

derivations as (
    select * from {{ ref('stg_crystal_forge__derivations') }}
),

final as (
    select
        reservations.derivation_id,
        reservations.worker_id,
        reservations.nixos_derivation_id,
        case
            when reserved.derivation_id is null then 'reserved derivation is missing'
            else 'nixos system is missing'
        end as problem
    from reservations
    left join derivations as reserved
        on reservations.derivation_id = reserved.derivation_id
    left join derivations as systems
        on reservations.nixos_derivation_id = systems.derivation_id
    where
        reserved.derivation_id is null
        or (reservations.nixos_derivation_id is not null and systems.derivation_id is null)
)

select * from final
