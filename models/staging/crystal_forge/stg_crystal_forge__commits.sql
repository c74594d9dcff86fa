{# Rename and cast only; a single select on purpose (doc single_select_models). #}
select
    id::integer as commit_id,
    git_commit_hash::text as git_commit_hash,
    commit_timestamp::timestamptz as commit_timestamp
from {{ source('crystal_forge', 'commits') }}
