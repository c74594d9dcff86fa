"""Read a dbt seed the way `dbt seed` loads it: its CSV, typed by its YAML `column_types`.

The seed's YAML (seeds/<folder>/_<folder>__seeds.yml) is the one place that says what
type each column is; this reads the same declaration, so a test comparing Python values
with a seed sees what the seed table holds. Empty fields are NULL (None), as in dbt.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime
from typing import Any

import yaml

from buildqueue.paths import PROJECT_DIR

SEEDS_DIR = PROJECT_DIR / "seeds"


class SeedError(ValueError):
    """A seed or its declaration that this reader cannot take as it stands."""


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise SeedError(f"not a boolean: {text!r} (write true or false)")
    return text.lower() == "true"


def _text_array(text: str) -> list[str]:
    """A PostgreSQL array literal of plain words: ``{a,b}``, ``{}`` for none."""
    if not (text.startswith("{") and text.endswith("}")) or any(c in text for c in '"\\'):
        raise SeedError(f"not a plain text[] literal: {text!r} (write {{a,b}} or {{}})")
    inner = text[1:-1]
    return inner.split(",") if inner else []


PARSERS: dict[str, Callable[[str], Any]] = {
    "integer": int,
    "bigint": int,
    "text": str,
    "boolean": _boolean,
    "timestamptz": datetime.fromisoformat,
    "text[]": _text_array,
}
"""How each PostgreSQL type a seed declares becomes a Python value (psycopg's type)."""


def column_types(folder: str, seed: str) -> dict[str, str]:
    """The `column_types` that seeds/<folder>/_<folder>__seeds.yml declares for ``seed``."""
    declaration = SEEDS_DIR / folder / f"_{folder}__seeds.yml"
    seeds = yaml.safe_load(declaration.read_text())["seeds"]
    for entry in seeds:
        if entry["name"] == seed:
            return dict(entry["config"]["column_types"])
    raise SeedError(f"{declaration} declares no seed {seed}: add it with its column_types")


def read_seed(folder: str, seed: str) -> list[dict[str, Any]]:
    """The rows of seeds/<folder>/<seed>.csv, each value typed by the seed's declaration."""
    types = column_types(folder, seed)
    path = SEEDS_DIR / folder / f"{seed}.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if list(reader.fieldnames or []) != list(types):
            raise SeedError(
                f"{path}: columns {reader.fieldnames} differ from the column_types declared"
                f" for it ({list(types)}); make the CSV header and the YAML agree"
            )
        unknown = sorted(set(types.values()) - set(PARSERS))
        if unknown:
            raise SeedError(f"{path}: no parser for type(s) {unknown}; add one to PARSERS")
        return [
            {name: PARSERS[types[name]](text) if text != "" else None for name, text in row.items()}
            for row in reader
        ]
