{#
    One row per queued NixOS system, with its commit. Rules: docs rule_queued_system,
    departure_systems_being_built.
    A single select, without import CTEs, on purpose: doc single_select_models.
#}
select
    derivations.derivation_id as nixos_id,
    derivations.derivation_name as system_name,
    derivations.commit_id,
    commits.commit_timestamp,
    commits.git_commit_hash,
    derivations.status_id = {{ setting('build_in_progress_status_id') }}
        as is_system_build_in_progress
{# left join: a system whose commit row is missing must still be reported #}
from {{ ref('stg_crystal_forge__derivations') }} as derivations
left join {{ ref('stg_crystal_forge__commits') }} as commits
    on derivations.commit_id = commits.commit_id
where
    derivations.derivation_type = 'nixos'
    and derivations.status_id
    in {{ setting_in_list('queued_system_status_ids', 'system_build_status_ids') }}
