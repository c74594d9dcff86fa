"""What only tests use, never imported by the CLI or the performance lab in `buildqueue/`:
scratch schemas and roles and the leftovers guard (scratch, scratch_fixtures), databases
shaped like Crystal Forge's (crystal_forge) and the deploy rehearsal (rehearsal).
"""
