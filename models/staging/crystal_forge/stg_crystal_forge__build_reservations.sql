{#
    Rename and cast only; a single select on purpose (doc single_select_models).
    `id` is not read: a reservation is known by its derivation (unique in Crystal Forge),
    and a view that named `id` would pin it against Crystal Forge's migrations.
#}
select
    worker_id::text as worker_id,
    derivation_id::integer as derivation_id,
    nixos_derivation_id::integer as nixos_derivation_id,
    reserved_at::timestamptz as reserved_at,
    heartbeat_at::timestamptz as heartbeat_at
from {{ source('crystal_forge', 'build_reservations') }}
