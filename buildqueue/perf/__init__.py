"""The performance lab: synthetic Crystal Forge fleets and what is measured on them.

    fleet          -- the synthetic fleet generator (deterministic for a seed)
    loader         -- COPY a fleet into a scratch schema, then index and analyze it
    catalog        -- the Crystal Forge tables (named once) and a schema's indexes
    benchmark      -- `./run bench`: the view against a baseline query on fleet shapes
    plans          -- reading EXPLAIN plans (parallelism, join estimates)
    load           -- Grafana-like pollers and percentiles
    capacity       -- `./run load`: how many dashboard viewers a fleet's view carries
    grafana_files  -- the dashboard's and alert rules' SQL as Grafana sends it (macros expanded)
    sample_cost    -- what one queue-history sample costs (`python -m buildqueue.perf.sample_cost`)
    replica, replica_load -- a primary and hot standby on 127.0.0.1, and the view's load on it

Numbers from these tools are recorded in docs/performance.md and docs/replicas.md.
"""
