with

source as (
    select * from {{ source('crystal_forge', 'derivation_statuses') }}
),

final as (
    select
        id::integer as status_id,
        name::text as status_name
    from source
)

select * from final
