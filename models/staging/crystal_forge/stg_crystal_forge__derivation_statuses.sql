{# Rename and cast only; a single select on purpose (doc single_select_models). #}
select
    id::integer as status_id,
    name::text as status_name
from {{ source('crystal_forge', 'derivation_statuses') }}
