{#
    Alert "Queue growing over window": pending packages grew for the whole window (var
    queue_growth_window), read from the queue history
    (build_queue_samples). The window starts at the newest sample taken at or before
    now() - window; from there every later sample must have at least as many pending
    packages as the one before it, and the latest more than that first one. Then
    pending_growth is the increase; otherwise 0, also when the history is shorter than
    the window. Grafana fires when it is above 0. A burst of new work that the workers
    then build down is not growth; new work arriving while nothing gets built is.
#}
with

samples as (
    select * from {{ ref('build_queue_samples') }}
),

window_start as (
    select max(sampled_at) as sampled_at
    from samples
    where sampled_at <= now() - interval '{{ setting("queue_growth_window") }}'
),

in_window as (
    select
        samples.sampled_at,
        samples.packages_pending,
        samples.packages_pending
        - lag(samples.packages_pending) over (order by samples.sampled_at) as pending_change
    from samples
    inner join window_start
        on samples.sampled_at >= window_start.sampled_at
),

growth as (
    select
        count(*) as samples_in_window,
        min(sampled_at) as window_started_at,
        (array_agg(packages_pending order by sampled_at asc))[1] as pending_at_start,
        (array_agg(packages_pending order by sampled_at desc))[1] as pending_now,
        {# the first sample's pending_change is NULL, which bool_and skips #}
        coalesce(bool_and(pending_change >= 0), false) as never_shrank
    from in_window
),

final as (
    select
        window_started_at,
        samples_in_window,
        pending_at_start,
        pending_now,
        case
            when samples_in_window > 1 and never_shrank and pending_now > pending_at_start
                then pending_now - pending_at_start
            else 0
        end as pending_growth
    from growth
)

select * from final
