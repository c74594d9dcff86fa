{# Rename and cast only; a single select on purpose (doc single_select_models). #}
select
    derivation_id::integer as derivation_id,
    depends_on_id::integer as depends_on_derivation_id
from {{ source('crystal_forge', 'derivation_dependencies') }}
