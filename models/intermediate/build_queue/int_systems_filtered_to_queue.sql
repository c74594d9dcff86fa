{# One row per queued NixOS system, with its commit. Rule: doc rule_queued_system. #}
with

derivations as (
    select * from {{ ref('stg_crystal_forge__derivations') }}
),

commits as (
    select * from {{ ref('stg_crystal_forge__commits') }}
),

queued_systems as (
    select
        derivation_id as nixos_id,
        derivation_name as system_name,
        commit_id
    from derivations
    where
        derivation_type = 'nixos'
        and status_id in {{ setting_in_list('queued_system_status_ids') }}
),

final as (
    select
        queued_systems.nixos_id,
        queued_systems.system_name,
        queued_systems.commit_id,
        commits.committed_at as commit_timestamp,
        commits.git_commit_hash
    from queued_systems
    {# left join: a system whose commit row is missing must still be reported #}
    left join commits
        on queued_systems.commit_id = commits.commit_id
)

select * from final
