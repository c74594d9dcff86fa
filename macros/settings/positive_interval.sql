{# An interval setting; every interval setting is longer than zero (validated_var.sql). #}
{% macro positive_interval(name) %}
    {{ return(setting(name)) }}
{% endmacro %}
