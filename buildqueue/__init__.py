"""buildqueue-dbt: the harness and CLI around the dbt project in this repository.

Modules:
    paths     -- where the project and its scratch folder live
    database  -- start or locate the PostgreSQL the project runs against (one place)
    dbt       -- run dbt in-process against such a database
    report    -- render view_build_queue_status rows as a terminal table
    cli       -- the `buildqueue` command (demo, build, test)
"""
