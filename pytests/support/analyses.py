"""The spec's example and alert queries as dbt analyses (analyses/*.sql), compiled to SQL."""

from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR, compiled_analyses


def analysis_names() -> list[str]:
    """Every analysis in analyses/, sorted by name."""
    return sorted(path.stem for path in (PROJECT_DIR / "analyses").glob("*.sql"))


def compile_analyses(project: DbtProject) -> dict[str, str]:
    """Run `dbt compile` on the analyses; return each one's compiled SQL by name."""
    project.invoke("compile", "--select", "resource_type:analysis")
    paths = {name: compiled_analyses() / f"{name}.sql" for name in analysis_names()}
    if missing := [str(path) for path in paths.values() if not path.exists()]:
        raise FileNotFoundError(f"dbt compile did not write {missing}")
    return {name: path.read_text() for name, path in paths.items()}
