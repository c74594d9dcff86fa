"""buildqueue-dbt: the harness and CLI around the dbt project in this repository.

Modules:
    paths      -- where the project and its scratch folder live
    database   -- start or locate the PostgreSQL the project runs against (one place)
    dbt        -- run dbt in-process against such a database
    report     -- read view_build_queue_status and render it as a terminal table
    view_sql   -- the view's create-or-replace statement, for SQL-migration deployments
    cli        -- the `buildqueue` command (`./run`): demo, build, show, view-sql, dbt,
                  test, load, bench
    example    -- the spec's example rows the tests compare against
    fleet, benchmark, load, plans -- synthetic fleets, the benchmark and the load test
    grafana, docs, browser, analyses -- checks of the Grafana files, dbt docs and analyses
"""
