{# Queued systems without a host name: the view lists them with a NULL system_name. #}
{{ config(severity='warn') }}

with

systems as (
    select * from {{ ref('int_systems_filtered_to_queue') }}
),

final as (
    select
        nixos_id,
        system_name,
        commit_id
    from systems
    where system_name is null or trim(system_name) = ''
)

select * from final
