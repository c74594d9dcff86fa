{#
    Dependency edges stored more than once (the real table's primary key forbids it, a
    copy without it may not). The view counts each package once; this names the edges.
#}
{{ config(severity='warn') }}

with

dependencies as (
    select * from {{ ref('stg_crystal_forge__derivation_dependencies') }}
),

final as (
    select
        derivation_id,
        depends_on_derivation_id,
        count(*) as copies
    from dependencies
    group by derivation_id, depends_on_derivation_id
    having count(*) > 1
)

select * from final
