{#
    One row per queued system that has at least one reservation: its workers and
    heartbeats. Rules: docs rule_active_workers, rule_worker_ids, rule_has_stale_workers.
    now() is evaluated when the view is queried, so staleness is always current.
#}
with

system_reservations as (
    select * from {{ ref('int_system_reservations_attributed') }}
),

final as (
    select
        nixos_id,
        count(distinct worker_id) as active_workers,
        {# byte order ("C"), so the array's order is the same on every deployment #}
        coalesce(
            array_agg(distinct worker_id collate "C" order by worker_id collate "C")
            filter (where worker_id is not null),
            '{}'
        )::text[] as worker_ids,
        min(reserved_at) as earliest_reservation,
        max(heartbeat_at) as latest_heartbeat,
        coalesce(
            bool_or(heartbeat_at < now() - interval '{{ setting("stale_heartbeat_threshold") }}'),
            false
        ) as has_stale_workers
    from system_reservations
    group by nixos_id
)

select * from final
