{#
    Dependency rows whose system or package has no derivation row. The view ignores the
    missing side (a package that does not exist is not counted); this names the rows.
#}
{{ config(severity='warn') }}

with

dependencies as (
    select * from {{ ref('stg_crystal_forge__derivation_dependencies') }}
),

derivations as (
    select * from {{ ref('stg_crystal_forge__derivations') }}
),

final as (
    select
        dependencies.derivation_id,
        dependencies.depends_on_derivation_id,
        case
            when systems.derivation_id is null then 'dependent derivation is missing'
            else 'depended-on derivation is missing'
        end as problem
    from dependencies
    left join derivations as systems
        on dependencies.derivation_id = systems.derivation_id
    left join derivations as packages
        on dependencies.depends_on_derivation_id = packages.derivation_id
    where systems.derivation_id is null or packages.derivation_id is null
)

select * from final
