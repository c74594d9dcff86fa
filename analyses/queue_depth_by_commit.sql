{#
    Spec example query "Queue depth by commit (Grafana time series)": one point per
    commit timestamp, newest first, as the spec orders it.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select
        commit_timestamp as time,
        count(*) as systems,
        sum(pending_packages + building_packages) as total_work_remaining,
        sum(active_workers) as workers_assigned
    from queue
    group by commit_timestamp
)

select * from final
order by time desc
