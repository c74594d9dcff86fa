{#
    Primary key of a model: the columns are never NULL and unique together.
    when_source_table_exists: name of a source table in source_schema; when that table is
    absent (an optional table such as derivation_statuses) the test passes with nothing to
    check instead of erroring.
#}
{% test primary_key(model, column_names, when_source_table_exists=none) %}
{%- set present = true -%}
{%- if when_source_table_exists and execute -%}
    {%- set present = adapter.get_relation(database=target.database, schema=setting('source_schema'), identifier=when_source_table_exists) is not none -%}
{%- endif -%}
{%- if present %}
with

keys as (
    select {{ column_names | join(', ') }}
    from {{ model }}
),

problems as (
    select
        {{ column_names | join(', ') }},
        count(*) as occurrences
    from keys
    group by {{ column_names | join(', ') }}
    having
        count(*) > 1
        {%- for column in column_names %}
        or {{ column }} is null
        {%- endfor %}
)

select * from problems
{%- else %}
select null as nothing_to_check where false
{%- endif %}
{% endtest %}
