{#
    Spec alert "Stale Workers Detected": the number of systems with a stale worker.
    Grafana fires when it is above 0 for more than 10 minutes
    (grafana/provisioning/alerting/buildqueue-alerts.yaml).
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
