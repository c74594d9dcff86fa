{#
    An interval setting that must be longer than zero (a sample interval, a retention, a
    window): setting() checks the form, this also refuses '0 minutes', which
    date_bin() would reject only at run time with a message that names no var.
#}
{% macro positive_interval(name) %}
    {%- set value = setting(name) -%}
    {%- set amounts = modules.re.findall('\\d+(?:\\.\\d+)?', value) | map('float') | list -%}
    {%- if amounts | select('>', 0) | list | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "Invalid value for var '" ~ name ~ "': " ~ (value | tojson) ~ ". Expected an "
            ~ "interval longer than zero such as '1 minute'. Fix it in dbt_project.yml (vars:) "
            ~ "or in --vars, e.g. --vars '{" ~ name ~ ": 1 minute}'."
        ) }}
    {%- endif -%}
    {{ return(value) }}
{% endmacro %}
