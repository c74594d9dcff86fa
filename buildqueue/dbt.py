"""Run dbt in-process (dbtRunner) against a `Database`.

dbt is not safe to run from several threads at once, so every invocation goes through
`DbtProject.invoke`, which holds a process-wide lock. The profile is profiles.yml.example,
copied into .buildqueue/profiles; the connection reaches it through the PG* variables.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildqueue.database import Database
from buildqueue.paths import PROFILES_TEMPLATE, PROJECT_DIR, SCRATCH_DIR

_LOCK = threading.Lock()
FAILED_STATUSES = {"error", "fail", "runtime error"}


class DbtError(Exception):
    """A dbt command failed; the message lists what failed and dbt's own words."""


@dataclass
class DbtOutcome:
    """What one dbt invocation did."""

    command: list[str]
    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    node_statuses: dict[str, str] = field(default_factory=dict)
    result: Any = None

    def describe(self) -> str:
        lines = [f"dbt {' '.join(self.command)}: {'ok' if self.success else 'FAILED'}"]
        lines += [f"  failed: {item}" for item in self.failures]
        lines += [f"  warned: {item}" for item in self.warnings]
        return "\n".join(lines)


@dataclass
class DbtProject:
    """The dbt project in this repository, bound to one database and target."""

    database: Database
    target: str = "dev"
    schema: str | None = None
    quiet: bool = True
    project_dir: Path = PROJECT_DIR

    @property
    def profiles_dir(self) -> Path:
        folder = SCRATCH_DIR / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        profile = folder / "profiles.yml"
        if not profile.exists() or profile.read_text() != PROFILES_TEMPLATE.read_text():
            shutil.copyfile(PROFILES_TEMPLATE, profile)
        return folder

    def environment(self) -> dict[str, str]:
        env = {**self.database.env(), "DBT_TARGET": self.target}
        if self.schema:
            env["BUILDQUEUE_SCHEMA"] = self.schema
        return env

    def invoke(
        self, *args: str, vars: dict[str, Any] | None = None, check: bool = True
    ) -> DbtOutcome:
        """Run one dbt command; raise `DbtError` on failure when ``check``."""
        from dbt.cli.main import dbtRunner

        command = list(args)
        command += ["--project-dir", str(self.project_dir)]
        command += ["--profiles-dir", str(self.profiles_dir), "--target", self.target]
        if vars:
            command += ["--vars", json.dumps(vars)]
        if self.quiet:
            command += ["--quiet"]
        with _LOCK:
            saved = {key: os.environ.get(key) for key in self.environment()}
            os.environ.update(self.environment())
            try:
                result = dbtRunner().invoke(command)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        outcome = _outcome(command, result)
        if check and not outcome.success:
            raise DbtError(outcome.describe())
        return outcome

    def load_fixtures(self) -> DbtOutcome:
        """Load the example fixtures (refused by dbt on a production target)."""
        return self.invoke("seed", vars={"load_fixtures": True})

    def build(self, *extra: str, fixtures: bool = True, check: bool = True) -> DbtOutcome:
        """dbt build: models, data tests and unit tests (seeds loaded first when fixtures)."""
        if fixtures:
            self.load_fixtures()
        args = ["build", *extra]
        if fixtures:
            args += ["--exclude", "resource_type:seed"]
        return self.invoke(*args, vars={"load_fixtures": fixtures}, check=check)


def _outcome(command: list[str], result: Any) -> DbtOutcome:
    outcome = DbtOutcome(command=command, success=bool(result.success), result=result)
    if result.exception is not None:
        outcome.success = False
        outcome.failures.append(str(result.exception).strip())
    for node_result in getattr(result.result, "results", None) or []:
        node = getattr(node_result, "node", None)
        name = getattr(node, "unique_id", None) or getattr(node_result, "unique_id", "?")
        status = str(getattr(node_result, "status", "")).lower()
        outcome.node_statuses[name] = status
        message = (getattr(node_result, "message", None) or "").strip()
        if status in FAILED_STATUSES:
            outcome.failures.append(f"{name}: {message}")
        elif status == "warn":
            outcome.warnings.append(f"{name}: {message}")
    return outcome
