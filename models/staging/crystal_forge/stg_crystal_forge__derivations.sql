{# Rename and cast only; a single select on purpose (doc single_select_models). #}
select
    id::integer as derivation_id,
    commit_id::integer as commit_id,
    derivation_type::text as derivation_type,
    derivation_name::text as derivation_name,
    status_id::integer as status_id
from {{ source('crystal_forge', 'derivations') }}
