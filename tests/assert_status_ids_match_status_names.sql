{#
    Warn-level: the configured status ids name the statuses the view assumes, according to
    the deployment's own derivation_statuses table. Real Crystal Forge databases number
    statuses differently from the spec (e.g. build-complete is 10, 12 is build-failed), so
    a deployment with the spec's defaults is caught here. Names are compared without case
    or punctuation ("build-inprogress" = "BuildInProgress"). Passes with nothing to check
    when the table does not exist.
#}
{{ config(severity='warn') }}
-- depends_on: {{ ref('stg_crystal_forge__derivation_statuses') }}

{%- set statuses_table = none -%}
{%- if execute -%}
    {%- set statuses_table = adapter.get_relation(database=target.database, schema=setting('source_schema'), identifier='derivation_statuses') -%}
{%- endif -%}

{%- if statuses_table is not none %}
with

statuses as (
    select * from {{ ref('stg_crystal_forge__derivation_statuses') }}
),

configured (var_name, status_id, expected_names) as (
    values
        {%- for status_id in setting('queued_system_status_ids') %}
        ('queued_system_status_ids', {{ status_id }}, array['dryruncomplete', 'scheduled']),
        {%- endfor %}
        ('build_complete_status_id', {{ setting('build_complete_status_id') }}, array['buildcomplete', 'built', 'complete']),
        ('build_in_progress_status_id', {{ setting('build_in_progress_status_id') }}, array['buildinprogress', 'building']),
        ('cache_pushed_status_id', {{ setting('cache_pushed_status_id') }}, array['cachepushed'])
),

final as (
    select
        configured.var_name,
        configured.status_id,
        statuses.status_name as name_in_derivation_statuses,
        configured.expected_names
    from configured
    left join statuses
        on configured.status_id = statuses.status_id
    where
        statuses.status_name is null
        or not (regexp_replace(lower(statuses.status_name), '[^a-z]', '', 'g') = any(configured.expected_names))
)

select * from final
{%- else %}
select null as nothing_to_check where false
{%- endif %}
