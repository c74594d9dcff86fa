"""dbt docs: generate the site the docs tests serve and read.

That everything is described is dbt-bouncer's check (dbt-bouncer.yml, run by .ci/lint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildqueue.dbt import DbtProject
from buildqueue.paths import SCRATCH_DIR

DOCS_TARGET_DIR = SCRATCH_DIR / "docs-site"
"""Where the tests generate the site: a target path of its own, so later dbt commands
(compile, ls) cannot overwrite the manifest the served site reads."""


@dataclass
class DocsArtifacts:
    """What `dbt docs generate` wrote: the site's folder, manifest and catalog."""

    target_dir: Path
    manifest: dict[str, Any]
    catalog: dict[str, Any]

    @property
    def index_html(self) -> Path:
        return self.target_dir / "index.html"


def generate_docs(project: DbtProject, target_dir: Path = DOCS_TARGET_DIR) -> DocsArtifacts:
    """Run `dbt docs generate` into ``target_dir``; load its manifest.json and catalog.json."""
    project.invoke("docs", "generate", "--target-path", str(target_dir))
    return DocsArtifacts(
        target_dir=target_dir,
        manifest=json.loads((target_dir / "manifest.json").read_text()),
        catalog=json.loads((target_dir / "catalog.json").read_text()),
    )
