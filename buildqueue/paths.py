"""Where the dbt project and the harness's git-ignored scratch folder live."""

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SCRATCH_DIR = PROJECT_DIR / ".buildqueue"
PROFILES_TEMPLATE = PROJECT_DIR / "profiles.yml.example"


def compiled_analyses() -> Path:
    """Where dbt compiles analyses/: under $DBT_TARGET_PATH (from the project) or target/."""
    target = PROJECT_DIR / os.environ.get("DBT_TARGET_PATH", "target")
    return target / "compiled" / "buildqueue" / "analyses"
