"""buildqueue-dbt: the command (`./run`) around the dbt project in this repository.

This package is what the CLI needs at run time:
    cli        -- the `buildqueue` command (`./run`): demo, build, show, view-sql, sample,
                  dbt, test, load, bench
    paths      -- where the project and its scratch folder live
    database   -- start or locate the PostgreSQL the project runs against (one place);
                  container_image and docker_engine back its testcontainers option
    dbt        -- run dbt in-process against such a database
    profile    -- the dbt profile it runs with: rendered by dbt, handed over privately
    report     -- read view_build_queue_status and render it as a terminal table
    view_sql   -- the view's create-or-replace statement, for SQL-migration deployments
    sampler    -- take queue history samples (the build_queue_samples model)

The other two wings: `buildqueue.perf`, the performance lab (synthetic fleets, the benchmark,
the load test), which `./run bench` and `./run load` import on demand; and
`pytests/support`, what only the tests use. Nothing in this package imports the tests.
"""
