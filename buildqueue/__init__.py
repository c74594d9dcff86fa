"""buildqueue-dbt: the command (`./run`) around the dbt project in this repository.

    cli       -- the `buildqueue` command: demo, build, show, view-sql, sample, dbt, test
    paths     -- where the project and its scratch folder live
    database  -- start or locate the PostgreSQL the project runs against
    dbt       -- run dbt in-process (dbtRunner) against it, from a written profile
    report    -- read view_build_queue_status and render it for a terminal
    view_sql  -- the view's create-or-replace statement, for SQL migrations
    sampler   -- take a queue history sample (the build_queue_samples model)

`buildqueue.perf` (the performance lab) is imported on demand by `./run bench` and `./run
load`; `pytests/support` holds what only the tests use.
"""
