{#
    Spec example query "Find stale workers requiring intervention": systems with at least
    one reservation whose heartbeat is older than var stale_heartbeat_threshold, the
    longest-silent first.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select
        system_name,
        worker_ids,
        latest_heartbeat,
        now() - latest_heartbeat as time_since_heartbeat,
        building_packages
    from queue
    where has_stale_workers
)

select * from final
order by latest_heartbeat asc
