"""Performance tools: synthetic Crystal Forge fleets and what is measured on them.

    fleet, loader  -- the synthetic fleet generator; COPY it into tables in Crystal Forge's shape
    catalog        -- the Crystal Forge tables, and the optional index step bench measures
    corpus         -- every query shape asked of the view (spec, Grafana, upstream, filters)
    bench          -- `./run bench`: each shape against select *, without and with the index step
    plans          -- reading EXPLAIN plans (parallelism, how often an aggregation ran)
    capacity       -- `./run load`: Grafana viewers one server carries, with pgbench

Numbers from these tools are recorded in docs/performance.md and docs/replicas.md.
"""
