{#
    Post-hook of build_queue_samples: deletes the samples older than var
    queue_sample_retention, in the same transaction that adds the new one, so the table
    never holds more than retention / interval rows (43,200 with the defaults).
#}
{% macro prune_queue_samples(relation) %}
    delete from {{ relation }}
    where sampled_at < now() - interval '{{ positive_interval("queue_sample_retention") }}'
{% endmacro %}
