{#
    The one rule for a name from a var or an environment variable (_macros.yml: identifier).
    No double quote: dbt writes relation names quoted without doubling one inside.
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
