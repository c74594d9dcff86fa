{#
    Spec alert "Stale Workers Detected": the number of systems with a stale worker (the
    view applies var stale_heartbeat_threshold). Grafana fires when it stays above 0 for
    the rule's pending period (`for` in grafana/provisioning/alerting/buildqueue-alerts.yaml),
    which has no counterpart in one query.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select count(*) as stale_systems
    from queue
    where has_stale_workers
)

select * from final
