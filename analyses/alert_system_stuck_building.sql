{#
    Spec alert "System Stuck Building": systems still building whose first reservation
    is older than var stuck_building_threshold. Any row fires the alert.
#}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

final as (
    select *
    from queue
    where
        status = 'building'
        and earliest_reservation < now() - interval '{{ setting("stuck_building_threshold") }}'
)

{#
    The view's whole row, columns as its contract has them. sqlfluff cannot see a ref'd
    view's columns and calls `*` ambiguous (AM04); a Jinja comment cannot carry its noqa.
#}
select * from final  -- noqa: AM04
order by earliest_reservation asc
