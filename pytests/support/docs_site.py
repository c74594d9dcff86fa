"""dbt docs: generate the site the docs tests serve and read (dbt-bouncer checks descriptions)."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildqueue.dbt import DbtProject
from buildqueue.paths import SCRATCH_DIR

# a target path of its own (and of its xdist worker's), so later dbt commands cannot
# overwrite the served site's manifest
DOCS_TARGET_DIR = SCRATCH_DIR / f"docs-site-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@dataclass
class DocsArtifacts:
    """What `dbt docs generate` wrote: the site's folder, manifest and catalog."""

    target_dir: Path
    manifest: dict[str, Any]
    catalog: dict[str, Any]


def generate_docs(project: DbtProject, target_dir: Path = DOCS_TARGET_DIR) -> DocsArtifacts:
    """Run `dbt docs generate` into ``target_dir``; load its manifest.json and catalog.json."""
    project.invoke("docs", "generate", "--target-path", str(target_dir))
    read = [json.loads((target_dir / f"{n}.json").read_text()) for n in ("manifest", "catalog")]
    return DocsArtifacts(target_dir, *read)
