"""A dbt seed read as `dbt seed` loads it: its CSV typed by its YAML column_types (empty: None)."""

import csv
from datetime import datetime
from typing import Any

import yaml

from buildqueue.paths import PROJECT_DIR

SEEDS_DIR = PROJECT_DIR / "seeds"
PARSERS = {"integer": int, "bigint": int, "text": str, "timestamptz": datetime.fromisoformat,
           "boolean": lambda text: {"true": True, "false": False}[text.lower()],
           "text[]": lambda text: text[1:-1].split(",") if text != "{}" else []}  # fmt: skip


def read_seed(folder: str, seed: str) -> list[dict[str, Any]]:
    """The rows of seeds/<folder>/<seed>.csv, typed by _<folder>__seeds.yml's column_types."""
    seeds = yaml.safe_load((SEEDS_DIR / folder / f"_{folder}__seeds.yml").read_text())["seeds"]
    types = next(entry for entry in seeds if entry["name"] == seed)["config"]["column_types"]
    with (SEEDS_DIR / folder / f"{seed}.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == list(types), f"{seed}.csv's header differs from column_types"
        return [{k: PARSERS[types[k]](v) if v else None for k, v in row.items()} for row in reader]
