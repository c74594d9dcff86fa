{#
    One row per queued NixOS system: package progress, workers and cache state.
    Published as a view, so every query sees the operational tables as they are now.
    Readers (var view_reader_roles, e.g. a Grafana role) get SELECT on the view and USAGE
    on its schema, nothing on the source tables: the view runs with its owner's rights.
#}
{{
    config(
        grants={'select': setting('view_reader_roles')},
        post_hook="{{ grant_schema_usage(this) }}",
    )
}}
with

systems as (
    select * from {{ ref('int_systems_filtered_to_queue') }}
),

{#
    materialized (both aggregations): each runs once per query, whatever the filter.
    Inlined, a filter on another column let the planner put one on the inner side of a
    nested loop under a one-row estimate and re-run it per system (190 s).
    docs/performance.md ("Each aggregation once")
#}
package_counts as materialized (
    select * from {{ ref('int_system_packages_aggregated') }}
),

reservation_summaries as materialized (
    select * from {{ ref('int_system_reservations_aggregated') }}
),

joined as (
    select
        systems.nixos_id,
        systems.system_name,
        systems.commit_timestamp,
        systems.git_commit_hash,
        coalesce(package_counts.total_packages, 0) as total_packages,
        coalesce(package_counts.completed_packages, 0) as completed_packages,
        {# doc rule_building_packages: a system build builds what is not built yet #}
        case
            when systems.is_system_build_in_progress
                then coalesce(package_counts.total_packages - package_counts.completed_packages, 0)
            else coalesce(package_counts.building_packages, 0)
        end as building_packages,
        coalesce(package_counts.cached_packages, 0) as cached_packages,
        coalesce(reservation_summaries.active_workers, 0) as active_workers,
        coalesce(reservation_summaries.worker_ids, '{}') as worker_ids,
        reservation_summaries.earliest_reservation,
        reservation_summaries.latest_heartbeat,
        coalesce(reservation_summaries.has_stale_workers, false) as has_stale_workers,
        systems.is_system_build_in_progress
    {# left joins: systems with no packages or no workers are still in the queue #}
    from systems
    left join package_counts
        on systems.nixos_id = package_counts.nixos_id
    left join reservation_summaries
        on systems.nixos_id = reservation_summaries.nixos_id
),

final as (
    select
        nixos_id,
        system_name,
        commit_timestamp,
        git_commit_hash,
        total_packages,
        completed_packages,
        building_packages,
        total_packages - completed_packages - building_packages as pending_packages,
        cached_packages,
        active_workers,
        worker_ids,
        earliest_reservation,
        latest_heartbeat,
        case
            when is_system_build_in_progress then 'building'
            when completed_packages = total_packages then 'ready_for_system_build'
            when active_workers > 0 then 'building'
            else 'pending'
        end as status,
        case
            when
                completed_packages = total_packages
                and cached_packages < total_packages
                then 'waiting_for_cache_push'
        end as cache_status,
        has_stale_workers
    from joined
)

select * from final
order by commit_timestamp desc nulls last, system_name asc, nixos_id asc
