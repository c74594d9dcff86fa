{#
    With the example fixtures loaded, the view returns exactly the rows of seed
    expected_view_build_queue_status (the spec's example table, with server-c's
    cache_status as doc block departure_server_c_cache_status says; pytest reads the same
    file). Returns the rows that are in one set but not the other. Times relative to load
    time are ages in the seed: each earliest_reservation and latest_heartbeat plus its
    age must give one and the same instant (the fixtures' load, which publish_fixture
    stamps with one now()), and that instant cannot lie in the future. Without the
    fixtures (a real database) there is no example to compare and the test checks nothing.
#}
{%- if setting('load_fixtures') %}
with

view_rows as (
    select * from {{ ref('view_build_queue_status') }}
),

expected_rows as (
    select * from {{ ref('expected_view_build_queue_status') }}
),

load_instants as (
    select
        view_rows.earliest_reservation
        + make_interval(secs => expected_rows.earliest_reservation_age_seconds) as loaded_at
    from view_rows
    inner join expected_rows on view_rows.nixos_id = expected_rows.nixos_id
    union
    select
        view_rows.latest_heartbeat
        + make_interval(secs => expected_rows.latest_heartbeat_age_seconds) as loaded_at
    from view_rows
    inner join expected_rows on view_rows.nixos_id = expected_rows.nixos_id
),

example_load as (
    select
        {# no age matches (NULL) when there is not exactly one instant or it is to come #}
        case
            when count(distinct loaded_at) = 1 and max(loaded_at) <= now()
                then max(loaded_at)
        end as loaded_at
    from load_instants
    where loaded_at is not null
),

actual as (
    select
        view_rows.nixos_id,
        view_rows.system_name,
        view_rows.commit_timestamp,
        view_rows.total_packages,
        view_rows.completed_packages,
        view_rows.building_packages,
        view_rows.pending_packages,
        view_rows.cached_packages,
        view_rows.active_workers,
        view_rows.worker_ids,
        view_rows.status,
        view_rows.cache_status,
        view_rows.has_stale_workers,
        view_rows.earliest_reservation,
        view_rows.latest_heartbeat
    from view_rows
),

expected as (
    select
        expected_rows.nixos_id,
        expected_rows.system_name,
        expected_rows.commit_timestamp,
        expected_rows.total_packages,
        expected_rows.completed_packages,
        expected_rows.building_packages,
        expected_rows.pending_packages,
        expected_rows.cached_packages,
        expected_rows.active_workers,
        expected_rows.worker_ids,
        expected_rows.status,
        expected_rows.cache_status,
        expected_rows.has_stale_workers,
        example_load.loaded_at
        - make_interval(secs => expected_rows.earliest_reservation_age_seconds)
        as earliest_reservation,
        example_load.loaded_at
        - make_interval(secs => expected_rows.latest_heartbeat_age_seconds) as latest_heartbeat
    from expected_rows
    cross join example_load
),

missing as (
    select
        'missing from view' as problem,
        expected.*
    from (select * from expected except select * from actual) as expected
),

unexpected as (
    select
        'unexpected in view' as problem,
        actual.*
    from (select * from actual except select * from expected) as actual
),

final as (
    select * from missing
    union all
    select * from unexpected
)

select * from final
{%- else %}
    select null as nothing_to_check
    where false
{%- endif %}
