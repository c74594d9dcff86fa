{#
    Spec alert "Queue Growing Unchecked": packages left to build across the queue, and
    whether that is above var packages_remaining_threshold (the Grafana rule's threshold).
    coalesce: an empty queue has 0 packages left, not NULL (the spec's bare sum would
    give NULL, which an alert reads as "no data").
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

remaining as (
    select coalesce(sum(pending_packages + building_packages), 0) as packages_remaining
    from queue
),

final as (
    select
        packages_remaining,
        packages_remaining > {{ setting('packages_remaining_threshold') }} as is_over_threshold
    from remaining
)

select * from final
