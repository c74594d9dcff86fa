{#
    Queued systems whose commit row is missing. The view still lists them, with NULL
    commit_timestamp and git_commit_hash, after every dated system.
#}
{{ config(severity='warn') }}

with

systems as (
    select * from {{ ref('int_systems_filtered_to_queue') }}
),

commits as (
    select * from {{ ref('stg_crystal_forge__commits') }}
),

final as (
    select
        systems.nixos_id,
        systems.system_name,
        systems.commit_id
    from systems
    left join commits
        on systems.commit_id = commits.commit_id
    where commits.commit_id is null
)

select * from final
