"""What only tests use, never imported by the CLI (`buildqueue`) or the performance lab
(`buildqueue.perf`):

    scratch          -- scratch schemas and roles per test, and the leftovers guard
    relations        -- run_dbt and check_relations_equal, in dbt-core's functional-test shape
    example          -- the spec's example rows the view must return, and copies of the example
    seed_csv         -- a dbt seed read as dbt loads it, typed by its YAML column_types
    crystal_forge    -- databases shaped like Crystal Forge's (macro crystal_forge_tables_ddl) and
                        their indexes
    rehearsal        -- the README's deploy commands, run as written
    grafana_files    -- the Grafana files read without a server, macros expanded as Grafana does
    grafana_checks   -- the Grafana files' wiring, and their panel and alert queries run
    transformations  -- the panels' transformations in Grafana's own code (@grafana/data),
                        in headless Chromium (browser: Selenium on Debian's chromium)
    docs_site        -- dbt docs generated for the docs site tests
    cli_process      -- the `buildqueue` command in a process of its own, as a shell runs it,
                        and a user's own password-protected (scram-sha-256) server
    pollers          -- Grafana-like clients polling the view (redeploys, the standby)
    replica          -- a primary and a hot standby (pg_basebackup -R) on 127.0.0.1
"""
