"""What only tests use: databases shaped like Crystal Forge's and the deploy rehearsal.

Nothing here runs at run time or in the performance lab; the harness in `buildqueue/`
never imports it.
"""
