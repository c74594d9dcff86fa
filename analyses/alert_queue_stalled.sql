{#
    Alert "Queue stalled": systems are waiting and no worker has held a reservation or
    heartbeated for longer than var queue_stall_threshold. On Crystal Forge the
    stale-workers alert rarely fires (its builders delete a reservation 300 s after its
    last heartbeat, so one is stale for at most about a minute); this one fires when
    the builders are gone, hung, or none will claim what waits (doc
    rule_package_progress_under_system_builds).
    When was a worker last alive: the newest heartbeat in the view now, or in the queue
    history (build_queue_samples, which keeps it after Crystal Forge deletes the
    reservation); with no heartbeat anywhere, the start of a history at least as long as
    the threshold. stalled_seconds is how long ago that was, when it is longer than the
    threshold and systems are queued; otherwise 0 (also when the history is too short to
    tell). Grafana fires when it is above 0.
#}
with

settings as (
    select interval '{{ setting("queue_stall_threshold") }}' as stall_threshold
),

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

samples as (
    select * from {{ ref('build_queue_samples') }}
),

queue_now as (
    select
        count(*) as systems_queued,
        max(latest_heartbeat) as latest_heartbeat
    from queue
),

history as (
    select
        max(latest_heartbeat) as latest_heartbeat,
        min(sampled_at) as started_at
    from samples
),

last_seen as (
    select
        queue_now.systems_queued,
        coalesce(
            greatest(queue_now.latest_heartbeat, history.latest_heartbeat),
            case
                when history.started_at <= now() - settings.stall_threshold
                    then history.started_at
            end
        ) as worker_last_seen_at
    from queue_now
    cross join history
    cross join settings
),

final as (
    select
        last_seen.systems_queued,
        last_seen.worker_last_seen_at,
        case
            when
                last_seen.systems_queued > 0
                and last_seen.worker_last_seen_at < now() - settings.stall_threshold
                then extract(epoch from now() - last_seen.worker_last_seen_at)::bigint
            else 0
        end as stalled_seconds
    from last_seen
    cross join settings
)

select * from final
