"""Run dbt in-process (dbtRunner) against a `Database`.

dbt is not safe to run from several threads at once, so every invocation goes through
`DbtProject.invoke`, which holds a process-wide lock. The profile is profiles.yml.example,
copied into .buildqueue/profiles; the connection reaches it through the PG* variables.
Set DBT_PROFILES_DIR to use a profiles.yml of your own instead.

Failures come back as one message naming the problem and the fix: connection failures
are explained like `buildqueue.database` explains them, dbt's macro call stacks are
dropped, and in quiet mode dbt prints nothing itself, so nothing is said twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from buildqueue.database import Database, explain_connection_error
from buildqueue.paths import PROFILES_TEMPLATE, PROJECT_DIR, SCRATCH_DIR

_LOCK = threading.Lock()
FAILED_STATUSES = {"error", "fail", "runtime error"}
PROFILES_DIR_ENV = "DBT_PROFILES_DIR"
PROFILE_NAME = "buildqueue"
AUDIT_SCHEMA_ENV = "BUILDQUEUE_AUDIT_SCHEMA"
_ENV_VAR = re.compile(r"\{\{\s*env_var\(\s*'(\w+)'\s*(?:,\s*'([^']*)'\s*)?\)\s*\}\}")
_CONNECTION_FAILURE_MARKS = ("connection to server", "could not connect to server")


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
    label: str = ""

    def describe(self) -> str:
        """One header line (the command as asked for), then what failed and warned."""
        asked = self.label or " ".join(self.command)
        lines = [f"dbt {asked}: {'ok' if self.success else 'FAILED'}"]
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
    vars: dict[str, Any] = field(default_factory=dict)
    """Vars given to every command (a command's own vars win), e.g. a source_schema."""
    audit_schema: str | None = None
    """Where `dbt test --store-failures` keeps failing rows (default dbt_test__audit)."""

    @property
    def profiles_dir(self) -> Path:
        """$DBT_PROFILES_DIR when set, else a folder holding a copy of profiles.yml.example."""
        if os.environ.get(PROFILES_DIR_ENV):
            return Path(os.environ[PROFILES_DIR_ENV])
        folder = SCRATCH_DIR / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        profile = folder / "profiles.yml"
        if not profile.exists() or profile.read_text() != PROFILES_TEMPLATE.read_text():
            shutil.copyfile(PROFILES_TEMPLATE, profile)
        return folder

    def view_schema(self) -> str:
        """The schema dbt builds the view in: the target's `schema` in the profile in use.

        Read from the profile itself (its `env_var(...)` calls resolved with the same
        environment dbt gets), so a schema is written in one place only.
        """
        if self.schema:
            return self.schema
        path = self.profiles_dir / "profiles.yml"
        try:
            outputs = yaml.safe_load(path.read_text())[PROFILE_NAME]["outputs"]
            raw = str(outputs[self.target]["schema"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise DbtError(
                f"Cannot read the schema of target '{self.target}' of profile "
                f"'{PROFILE_NAME}' in {path} ({type(error).__name__}: {error}). Fix: use a "
                "target that profile defines (dev, ci, prod in profiles.yml.example) or "
                f"unset {PROFILES_DIR_ENV} to use profiles.yml.example."
            ) from error
        env = {**os.environ, **self.environment()}
        return _ENV_VAR.sub(lambda match: env.get(match[1], match[2] or ""), raw)

    def environment(self) -> dict[str, str]:
        env = {**self.database.env(), "DBT_TARGET": self.target}
        if self.schema:
            env["BUILDQUEUE_SCHEMA"] = self.schema
        if self.audit_schema:
            env[AUDIT_SCHEMA_ENV] = self.audit_schema
        return env

    def invoke(
        self, *args: str, vars: dict[str, Any] | None = None, check: bool = True
    ) -> DbtOutcome:
        """Run one dbt command; raise `DbtError` on failure when ``check``.

        Options already in ``args`` (--target, --profiles-dir, --project-dir) win over the
        project's own, so `buildqueue dbt run --target prod` really targets prod.
        """
        from dbt.cli.main import dbtRunner

        command = list(args)
        defaults = {
            "--project-dir": str(self.project_dir),
            "--profiles-dir": str(self.profiles_dir),
            "--target": self.target,
        }
        for option, value in defaults.items():
            if not _has_option(command, option):
                command += [option, value]
        vars = {**self.vars, **(vars or {})}
        if vars:
            command += ["--vars", json.dumps(vars)]
        if self.quiet:
            # dbt would print its error and DbtError would say it again: say it once.
            command += ["--log-level", "none", "--log-level-file", "info"]
        with _LOCK:
            saved = {key: os.environ.get(key) for key in self.environment()}
            os.environ.update(self.environment())
            try:
                errors: list[str] = []
                result = dbtRunner(callbacks=[_error_collector(errors)]).invoke(command)
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        outcome = _outcome(command, result, self.database, errors)
        outcome.label = " ".join([*args, *(["--vars", json.dumps(vars)] if vars else [])])
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


def _has_option(command: list[str], option: str) -> bool:
    short = {"--target": "-t"}.get(option)
    return any(arg in (option, short) or arg.startswith(option + "=") for arg in command)


def explain_dbt_error(text: str, database: Database) -> str:
    """dbt's error text, made actionable: connection failures and a missing profile get
    the fix spelled out; dbt's "> in macro ... > called by ..." call stack is dropped."""
    lowered = text.lower()
    if any(mark in lowered for mark in _CONNECTION_FAILURE_MARKS):
        return explain_connection_error(Exception(text), database)
    if "could not find profile named" in lowered:
        return (
            f"{text.splitlines()[-1].strip()} (no such profile in the profiles.yml that "
            f"dbt read). Fix: copy profiles.yml.example to ~/.dbt/profiles.yml, point "
            f"{PROFILES_DIR_ENV} at a folder holding it, or unset {PROFILES_DIR_ENV} to "
            "let buildqueue write one."
        )
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith(">"))


def _error_collector(errors: list[str]) -> Any:
    """A dbt event callback keeping the text of error-level events (e.g. the exception of
    a failed run-operation, which dbt reports only as an event)."""

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error" and event.info.msg:
            errors.append(str(event.info.msg))

    return collect


def _outcome(
    command: list[str], result: Any, database: Database, errors: list[str] | None = None
) -> DbtOutcome:
    outcome = DbtOutcome(command=command, success=bool(result.success), result=result)
    if result.exception is not None:
        outcome.success = False
        outcome.failures.append(explain_dbt_error(str(result.exception), database))
    for node_result in getattr(result.result, "results", None) or []:
        node = getattr(node_result, "node", None)
        name = getattr(node, "unique_id", None) or getattr(node_result, "unique_id", "?")
        status = str(getattr(node_result, "status", "")).lower()
        outcome.node_statuses[name] = status
        message = (getattr(node_result, "message", None) or "").strip()
        if not message and status in FAILED_STATUSES and errors:
            message = errors[-1].strip()
        if status in FAILED_STATUSES:
            outcome.failures.append(f"{name}: {explain_dbt_error(message, database)}")
        elif status == "warn":
            outcome.warnings.append(f"{name}: {message}")
    return outcome
