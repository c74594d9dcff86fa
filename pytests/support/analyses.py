"""The spec's example and alert queries as dbt analyses (analyses/*.sql), compiled to SQL.

`dbt compile` renders every analysis into target/compiled/<project>/analyses/; the test
suite and anyone at a psql prompt can run that SQL against the built view.
"""

from __future__ import annotations

from pathlib import Path

from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR

ANALYSES_DIR = PROJECT_DIR / "analyses"
COMPILED_DIR = PROJECT_DIR / "target" / "compiled" / "buildqueue" / "analyses"


def analysis_names() -> list[str]:
    """Every analysis in analyses/, sorted by name."""
    return sorted(path.stem for path in ANALYSES_DIR.glob("*.sql"))


def compile_analyses(project: DbtProject) -> dict[str, str]:
    """Run `dbt compile` on the analyses; return each one's compiled SQL by name."""
    project.invoke("compile", "--select", "resource_type:analysis")
    compiled: dict[str, str] = {}
    for name in analysis_names():
        path: Path = COMPILED_DIR / f"{name}.sql"
        if not path.exists():
            raise FileNotFoundError(f"dbt compile did not write {path}")
        compiled[name] = path.read_text()
    return compiled
