{#
    Queue history: one row per sample of view_build_queue_status, appended by each
    scheduled `dbt run --select build_queue_samples` (docs/operations.md). A sample's time
    is the start of its bucket of var queue_sample_interval, the primary key: a second run
    in the same bucket, even one running at the same moment, adds nothing
    (incremental_strategy insert_or_skip: `on conflict do nothing`). Each run also deletes
    the samples older than var queue_sample_retention (post-hook prune_queue_samples).
    full_refresh false: `dbt build --full-refresh` must never drop the history.
    Grants only when view_reader_roles names roles: dbt revokes whatever a non-empty grants
    config leaves out, and a scheduled sample run that omits the var must not take
    Grafana's SELECT away (the deploy, with the var, grants it).
    The table lives next to the view, in the view's schema; nothing is written to the
    source schema and no trigger is involved.
#}
{{
    config(
        materialized='incremental',
        incremental_strategy='insert_or_skip',
        unique_key='sampled_at',
        full_refresh=false,
        on_schema_change='append_new_columns',
        grants={'select': setting('view_reader_roles')} if setting('view_reader_roles') else {},
        post_hook="{{ prune_queue_samples(this) }}",
    )
}}
{#- date_bin's origin: buckets are aligned on whole intervals since 2000-01-01 UTC #}
{%- set sample_time = "date_bin(interval '" ~ setting('queue_sample_interval')
    ~ "', now(), timestamptz '2000-01-01 00:00:00+00')" %}
with

queue as (
    select * from {{ ref('view_build_queue_status') }}
),

queue_counts as (
    select
        count(*) as systems_queued,
        count(*) filter (where status = 'building') as systems_building,
        count(*) filter (where status = 'ready_for_system_build') as systems_ready,
        count(*) filter (where has_stale_workers) as systems_with_stale_workers,
        {# sum(bigint) is numeric, and NULL over an empty queue #}
        coalesce(sum(pending_packages), 0)::bigint as packages_pending,
        coalesce(sum(building_packages), 0)::bigint as packages_building,
        coalesce(sum(completed_packages), 0)::bigint as packages_completed,
        coalesce(sum(cached_packages), 0)::bigint as packages_cached,
        {# the "Queue stalled" alert's memory of when a worker was last alive #}
        max(latest_heartbeat) as latest_heartbeat
    from queue
),

{# a worker holding reservations for two systems is one active worker #}
workers as (
    select count(distinct assigned.worker_id) as active_workers
    from queue
    cross join lateral unnest(queue.worker_ids) as assigned (worker_id)
),

final as (
    select
        {{ sample_time }} as sampled_at,
        now() as measured_at,
        queue_counts.systems_queued,
        queue_counts.systems_building,
        queue_counts.systems_ready,
        queue_counts.systems_with_stale_workers,
        queue_counts.packages_pending,
        queue_counts.packages_building,
        queue_counts.packages_completed,
        queue_counts.packages_cached,
        workers.active_workers,
        queue_counts.latest_heartbeat
    from queue_counts
    cross join workers
    {% if is_incremental() -%}
        {#
            Not correlated with the rows above, so PostgreSQL checks it once, first, and
            skips reading the view when this bucket already has its sample. (Only a shortcut:
            insert_or_skip is what keeps concurrent runs to one row.)
        #}
        where not exists (
            select from {{ this }} as taken
            where taken.sampled_at = {{ sample_time }}
        )
    {%- endif %}
)

select * from final
