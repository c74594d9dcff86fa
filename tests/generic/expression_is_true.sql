{# Every row satisfies the boolean SQL expression; failing rows are returned whole. #}
{% test expression_is_true(model, expression) %}
with

checked as (
    select
        *,
        ({{ expression }}) as passes
    from {{ model }}
)

select * from checked
where passes is not true
{% endtest %}
