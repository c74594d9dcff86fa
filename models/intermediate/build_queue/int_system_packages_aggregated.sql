{#
    One row per queued system that has at least one package: package counts by state.
    Rules: docs rule_completed_packages, rule_building_packages, rule_cached_packages.
#}
with

system_packages as (
    select * from {{ ref('int_system_packages_semi_joined') }}
),

final as (
    select
        nixos_id,
        count(*) as total_packages,
        count(*) filter (
            where package_status_id in (
                {{ setting('build_complete_status_id') }},
                {{ setting('cache_pushed_status_id') }}
            )
        ) as completed_packages,
        count(*) filter (
            where package_status_id = {{ setting('build_in_progress_status_id') }}
        ) as building_packages,
        count(*) filter (
            where package_status_id = {{ setting('cache_pushed_status_id') }}
        ) as cached_packages
    from system_packages
    group by nixos_id
)

select * from final
