{#
    Warn-level: every status id the view compares with is, in the deployment's own
    derivation_statuses, the status its var names. Ids looked up by name always pass; an
    explicit id override (e.g. build_complete_status_id: 6 on a Crystal Forge database,
    where 6 is dry-run-failed) is caught here, and each offending id is named in the log
    as well as returned. Names compare without case or punctuation. Passes with nothing
    to check when the table does not exist.
#}
{{ config(severity='warn') }}
-- depends_on: {{ ref('stg_crystal_forge__derivation_statuses') }}

{%- set mismatches = [] -%}
{%- if execute -%}
    {%- set statuses_table = adapter.get_relation(
        database=target.database, schema=setting('source_schema'), identifier='derivation_statuses'
    ) -%}
    {%- if statuses_table is not none -%}
        {%- set names_by_id = {} -%}
        {%- for row in run_query('select id, name from ' ~ statuses_table) -%}
            {%- do names_by_id.update({row[0] | int: row[1]}) -%}
        {%- endfor -%}
        {%- for id_var, role in status_roles().items() -%}
            {%- set wanted = validated_var(role.names_var) -%}
            {%- set wanted = wanted if role.many else [wanted] -%}
            {%- set expected = [] -%}
            {%- for name in wanted -%}
                {%- do expected.append(normalized_status_name(name)) -%}
            {%- endfor -%}
            {%- set configured = setting(id_var) -%}
            {%- for status_id in (configured if role.many else [configured]) -%}
                {%- set actual = names_by_id.get(status_id) -%}
                {%- if actual is none or normalized_status_name(actual) not in expected -%}
                    {%- do mismatches.append({'var': id_var, 'id': status_id, 'actual': actual, 'expected': wanted | join(' or ')}) -%}
                    {{ log(
                        "assert_status_ids_match_status_names: " ~ id_var ~ " = " ~ status_id ~ " is "
                        ~ ("'" ~ actual ~ "'" if actual is not none else "missing")
                        ~ " in " ~ setting("source_schema") ~ ".derivation_statuses, not " ~ (wanted | join(' or '))
                        ~ ". Fix: drop the override to look the id up by name, or correct it.",
                        info=true
                    ) }}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}
{%- endif -%}

{%- if mismatches %}
with

final (var_name, status_id, name_in_derivation_statuses, expected_status) as (
    values
    {%- for mismatch in mismatches %}
        (
            '{{ mismatch.var }}',
            {{ mismatch.id }},
            {{ "'" ~ (mismatch.actual | replace("'", "''")) ~ "'" if mismatch.actual is not none else 'null::text' }},
            '{{ mismatch.expected | replace("'", "''") }}'
        ){{ ',' if not loop.last }}
    {%- endfor %}
)

select * from final
{%- else %}
    select null as nothing_to_check
    where false
{%- endif %}
