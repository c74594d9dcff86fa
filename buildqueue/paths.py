"""Where the dbt project and the harness's scratch files live."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
"""The dbt project root (the folder holding dbt_project.yml)."""

SCRATCH_DIR = PROJECT_DIR / ".buildqueue"
"""Git-ignored folder for the embedded database, generated profiles and artifacts."""

PROFILES_TEMPLATE = PROJECT_DIR / "profiles.yml.example"
