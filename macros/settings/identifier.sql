{#
    The one rule for a name that reaches SQL from a var or an environment variable (a
    schema, a role): 1 to 63 bytes (PostgreSQL silently cuts longer names), no control
    character (a trailing newline included) and no double quote (dbt writes relation
    names between double quotes without doubling one inside, so a quote would end the
    name and let the rest run as SQL). Case is kept: the name is always written
    double-quoted, so PUBLIC and public are two names. Returns the name double-quoted
    (adapter.quote), or as given with quote=false where dbt quotes it (relation parts).
#}
{% macro identifier(value, origin, fix, quote=true) %}
    {% if not (value is string and 0 < (value.encode('utf-8') | length) < 64
            and not modules.re.search('[\\x00-\\x1f\\x7f-\\x9f"]', value)) %}
        {{ exceptions.raise_compiler_error(
            "Invalid name in " ~ origin ~ ": " ~ (value | tojson) ~ ". Expected 1 to 63 bytes"
            ~ " without control characters (a newline included) or double quotes; case is kept"
            ~ " (PUBLIC is not public). Fix: " ~ fix ~ "."
        ) }}
    {% endif %}
    {{ return(adapter.quote(value) if quote else value) }}
{% endmacro %}
