{#
    Spec alert "Queue Growing Unchecked": packages left to build across the queue.
    Grafana fires when it is above 500. coalesce: an empty queue has 0 packages left,
    not NULL (the spec's bare sum would give NULL, which an alert reads as "no data").
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select coalesce(sum(pending_packages + building_packages), 0) as packages_remaining
    from queue
)

select * from final
