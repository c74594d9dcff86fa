"""Where the dbt project and the harness's git-ignored scratch folder live."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SCRATCH_DIR = PROJECT_DIR / ".buildqueue"
PROFILES_TEMPLATE = PROJECT_DIR / "profiles.yml.example"
