{# Post-hook of build_queue_samples: drops samples older than queue_sample_retention, same transaction. #}
{% macro prune_queue_samples(relation) %}
    delete from {{ relation }}
    where sampled_at < now() - interval '{{ setting("queue_sample_retention") }}'
{% endmacro %}
