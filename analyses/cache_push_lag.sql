{#
    Spec example query "Monitor cache push lag": systems with packages built but not yet
    pushed to the binary cache, the largest backlog first.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select
        system_name,
        completed_packages,
        cached_packages,
        completed_packages - cached_packages as cache_lag,
        cache_status
    from queue
    where completed_packages > cached_packages
)

select * from final
order by cache_lag desc
