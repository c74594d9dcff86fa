{#
    Spec example query "Show systems with the most work remaining": queued systems that
    are not yet ready, most packages left to build first.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select
        system_name,
        pending_packages + building_packages as work_remaining,
        active_workers,
        commit_timestamp
    from queue
    where status != 'ready_for_system_build'
)

select * from final
order by work_remaining desc
limit 10
