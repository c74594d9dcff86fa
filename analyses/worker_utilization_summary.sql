{#
    Spec example query "Worker utilization summary": one row over the whole queue.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select
        sum(active_workers) as total_active_workers,
        count(*) as systems_in_queue,
        count(*) filter (where status = 'building') as systems_building,
        count(*) filter (where status = 'ready_for_system_build') as systems_ready
    from queue
)

select * from final
