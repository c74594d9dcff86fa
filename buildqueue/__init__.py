"""buildqueue-dbt: the `./run` command around this dbt project (cli); `buildqueue.perf` is
the performance lab, `pytests/support` what only tests use."""
