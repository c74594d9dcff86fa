with

source as (
    select * from {{ source('crystal_forge', 'derivation_dependencies') }}
),

final as (
    select
        derivation_id::integer as derivation_id,
        depends_on_id::integer as depends_on_derivation_id
    from source
)

select * from final
