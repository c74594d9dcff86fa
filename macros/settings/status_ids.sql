{# Statuses by name (Crystal Forge numbers them per database); see resolve_statuses in _macros.yml. #}

{# The status roles: the id setting the SQL reads -> the var naming its status(es). #}
{% macro status_roles() %}
    {{ return({
        'queued_system_status_ids': {'names_var': 'queued_system_statuses', 'label': 'queued', 'many': true},
        'system_build_status_ids': {'names_var': 'system_build_statuses', 'label': 'system build', 'many': true, 'optional': true},
        'build_complete_status_id': {'names_var': 'build_complete_status', 'label': 'build complete', 'many': false},
        'build_in_progress_status_id': {'names_var': 'build_in_progress_status', 'label': 'building', 'many': false},
        'cache_pushed_status_id': {'names_var': 'cache_pushed_status', 'label': 'cache pushed', 'many': false},
    }) }}
{% endmacro %}

{# A status name as compared: lower case, letters and digits only. #}
{% macro normalized_status_name(name) %}
    {{ return(modules.re.sub('[^a-z0-9]', '', (name | string) | lower)) }}
{% endmacro %}

{# For each role: {'ids', 'names', 'skipped', 'source'} (_macros.yml: resolve_statuses). #}
{% macro resolve_statuses() %}
    {% set roles = status_roles() %}
    {% set resolved = {} %}
    {% set lookups = [] %}
    {% for id_var, role in roles.items() %}
        {% if var(id_var, none) is not none %}
            {% set ids = validated_var(id_var) %}
            {% do resolved.update({id_var: {'ids': ids if role.many else [ids], 'names': [], 'skipped': [], 'source': 'override'}}) %}
        {% else %}
            {% do lookups.append(id_var) %}
        {% endif %}
    {% endfor %}
    {% if not lookups %}
        {{ return(resolved) }}
    {% endif %}
    {% if not execute %}
        {% for id_var in lookups %}
            {% do resolved.update({id_var: {'ids': [0], 'names': [], 'skipped': [], 'source': 'parse'}}) %}
        {% endfor %}
        {{ return(resolved) }}
    {% endif %}

    {% set schema = setting('source_schema') %}
    {% set table_name = schema ~ '.derivation_statuses' %}
    {% set fix_ids = "or give the ids explicitly, e.g. --vars '{queued_system_status_ids: [5], system_build_status_ids: [7, 8], build_complete_status_id: 10, build_in_progress_status_id: 8, cache_pushed_status_id: 14}'" %}
    {% set relation = api.Relation.create(database=target.database, schema=schema, identifier='derivation_statuses') %}
    {% if missing_source_tables(['derivation_statuses']) %}
        {{ exceptions.raise_compiler_error(
            "Cannot look up status ids: table " ~ table_name ~ " does not exist in database '"
            ~ target.database ~ "'. Fix: point var source_schema at the schema holding Crystal "
            ~ "Forge's tables (e.g. --vars '{source_schema: public}'), " ~ fix_ids ~ "."
        ) }}
    {% endif %}
    {% set rows = run_query('select id, name from ' ~ relation ~ ' order by id') %}
    {% set by_name = {} %}
    {% set listing = [] %}
    {% for row in rows %}
        {% set key = normalized_status_name(row[1]) %}
        {% if key not in by_name %}
            {% do by_name.update({key: {'id': row[0] | int, 'name': row[1]}}) %}
        {% endif %}
        {% do listing.append(row[1] ~ ' (' ~ row[0] ~ ')') %}
    {% endfor %}
    {% set has = "has: " ~ (listing | join(', ') if listing else 'no rows') %}

    {% for id_var in lookups %}
        {% set role = roles[id_var] %}
        {% set wanted = validated_var(role.names_var) %}
        {% set wanted = wanted if role.many else [wanted] %}
        {% set entry = {'ids': [], 'names': [], 'skipped': [], 'source': table_name} %}
        {% for name in wanted %}
            {% set found = by_name.get(normalized_status_name(name)) %}
            {% if found is none %}
                {% do entry.skipped.append(name) %}
            {% elif found.id not in entry.ids %}
                {% do entry.ids.append(found.id) %}
                {% do entry.names.append(found.name) %}
            {% endif %}
        {% endfor %}
        {% if not entry.ids and not role.get('optional') %}
            {{ exceptions.raise_compiler_error(
                "Status " ~ (wanted | join(', ')) ~ " (var " ~ role.names_var ~ ") is not in "
                ~ table_name ~ ", which " ~ has ~ ". Fix: set var " ~ role.names_var ~ " to "
                ~ ("names" if role.many else "a name") ~ " from that list (--vars '{"
                ~ role.names_var ~ ": ...}'), " ~ fix_ids ~ "."
            ) }}
        {% endif %}
        {% do resolved.update({id_var: entry}) %}
    {% endfor %}
    {{ return(resolved) }}
{% endmacro %}
