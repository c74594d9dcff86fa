{#
    One row per (queued system, package it depends on). Rule: doc rule_system_packages.
    A single select, without import CTEs, on purpose: doc single_select_models.

    A semi-join: a pair is in the queue's work when a dependency row links the system to
    the package. `exists` makes each pair count once however many rows link it, and costs nothing when
    the table's primary key (derivation_id, depends_on_id) already rules duplicates out:
    PostgreSQL then plans a plain join, in parallel on a big queue. Dependencies on
    systems or on missing rows match no package, so they are ignored.
#}
select
    systems.nixos_id,
    packages.derivation_id as package_id,
    packages.status_id as package_status_id
from (
    {#
        The queued systems in three disjoint thirds (by a hash of the id), glued back
        with `union all`: the same rows, but PostgreSQL can hand each third to its own
        process (a Parallel Append) whatever the size of the derivations table. Read as
        one scan, the queue only gets parallel workers when its rows span 8 MB of heap
        pages (min_parallel_table_scan_size): with years of finished history, a queue
        of fewer than ~1,000 systems ran serially, 2-2.5x slower than without history.
        Three, because each third's filter is an inequality on an expression without
        statistics, which the planner estimates as a third of the rows: the three
        estimates add up to the queue. It also matches the default parallelism (two
        workers and the leader). docs/performance.md ("No cliff with history").
    #}
    {% for third in range(3) %}
        select nixos_id
        from {{ ref('int_systems_filtered_to_queue') }}
        where ((hashint4(nixos_id) & 2147483647) + {{ third }}) % 3 < 1
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
) as systems
cross join {{ ref('stg_crystal_forge__derivations') }} as packages
where
    packages.derivation_type = 'package'
    and exists (
        select 1
        from {{ ref('stg_crystal_forge__derivation_dependencies') }} as dependency
        where
            {#
                `+ 0` hides the system id's column statistics from the planner, on
                purpose: with them it sizes this join as 1,000 ids out of every
                derivation ever evaluated (a few thousand rows where a million come
                back) and picks a serial plan. Without them it uses the dependency
                table's own rows per system, which are right. docs/performance.md
            #}
            dependency.derivation_id = systems.nixos_id + 0
            and dependency.depends_on_derivation_id = packages.derivation_id
    )
