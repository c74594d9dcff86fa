"""Run dbt in-process (dbtRunner) against a `Database`.

The profile is dbt's own rendering of profiles.yml.example (or of $DBT_PROFILES_DIR's
profiles.yml) for the database and target, handed to dbt as a private profiles.yml with
real values (`buildqueue.profile`); the vars are what dbt's project loader reads from
dbt_project.yml under the command's --vars (`project_vars`, `DbtProject.settings`).
Nothing here changes os.environ.

dbt keeps process-wide state (flags, adapters, the event manager), so invocations go one
at a time (a lock), even when a caller uses threads.

Failures come back as one message naming the problem and the fix: connection failures
are explained like `buildqueue.database` explains them, dbt's macro call stacks are
dropped, and in quiet mode dbt prints nothing itself, so nothing is said twice.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from buildqueue.database import Database, explain_connection_error
from buildqueue.paths import PROJECT_DIR
from buildqueue.profile import (
    ProfileError,
    RenderedTarget,
    profile_source,
    read_source,
    remember_schema,
    remembered_schema,
    render_target,
    write_profile,
)

_ONE_AT_A_TIME = threading.Lock()
FAILED_STATUSES = {"error", "fail", "runtime error"}
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
    _rendered: dict[tuple[str, str, str], RenderedTarget] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def rendered_target(
        self,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
        profiles_dir: str | None = None,
    ) -> RenderedTarget:
        """The target (default: this project's) as dbt renders it for this database.

        Cached per project while the profile file and every variable it read stay the
        same (dbt's own test for re-rendering).
        """
        source = profile_source(profiles_dir)
        target, cli_vars, env = target or self.target, {**self.vars, **(vars or {})}, self._env()
        key = (str(source), target, json.dumps(cli_vars, sort_keys=True, default=str))
        text = read_source(source)
        cached = self._rendered.get(key)
        if cached is None or not cached.holds_for(text, env):
            try:
                cached = self._rendered[key] = render_target(source, text, target, env, cli_vars)
            except ProfileError as error:
                raise DbtError(str(error)) from error
        return cached

    def view_schema(self) -> str:
        """The schema dbt builds the view in: this project's schema, else the target's
        `schema` as dbt renders the profile in use, so a schema is written in one place.

        Remembered across processes while what it was rendered from is unchanged
        (`buildqueue.profile.remembered_schema`): `./run show` then starts no dbt.
        """
        if self.schema:
            return self.schema
        source = profile_source()
        text, env = read_source(source), self._env()
        remembered = remembered_schema(source, text, self.target, env, self.vars)
        if remembered is not None:
            return remembered
        rendered = self.rendered_target()
        try:
            remember_schema(rendered)
            return rendered.schema
        except ProfileError as error:
            raise DbtError(str(error)) from error

    def _env(self) -> dict[str, str]:
        """What the profile is rendered in: the environment plus the database's libpq
        variables (profiles.yml.example reads them)."""
        return {**os.environ, **self.database.env()}

    def profiles_dir_for(
        self,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
        profiles_dir: str | None = None,
    ) -> Path:
        """A private folder whose profiles.yml holds the rendered target with this
        project's schema: what dbt gets as --profiles-dir."""
        rendered = self.rendered_target(target, vars, profiles_dir)
        settings = {**rendered.settings, **({"schema": self.schema} if self.schema else {})}
        return write_profile(rendered.name, settings)

    @property
    def profiles_dir(self) -> Path:
        """`profiles_dir_for` this project's own target, e.g. for a dbt subprocess."""
        return self.profiles_dir_for()

    def settings(self, vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """The vars this project's commands see: dbt_project.yml's as dbt reads them, then
        this project's vars, then ``vars`` (dbt's --vars order)."""
        return {**project_vars(self.project_dir), **self.vars, **(vars or {})}

    def invoke(
        self, *args: str, vars: dict[str, Any] | None = None, check: bool = True
    ) -> DbtOutcome:
        """Run one dbt command; raise `DbtError` on failure when ``check``.

        Options already in ``args`` win over the project's own: --target and --project-dir
        as given, --profiles-dir as the profile to render, so `buildqueue dbt run --target
        prod` really targets prod.
        """
        from dbt.cli.main import dbtRunner

        command = list(args)
        own_profiles = _pop_option(command, "--profiles-dir")
        vars = {**self.vars, **(vars or {})}
        profile_vars = {**vars, **_given_vars(command)}
        target = _option_value(command, "--target") or self.target
        folder = self.profiles_dir_for(target, profile_vars, own_profiles)
        defaults = {"--project-dir": str(self.project_dir), "--target": target}
        for option, value in defaults.items():
            if not _has_option(command, option):
                command += [option, value]
        command += ["--profiles-dir", str(folder)]
        if vars:
            command += ["--vars", json.dumps(vars)]
        if self.quiet:
            # dbt would print its error and DbtError would say it again: say it once.
            command += ["--log-level", "none", "--log-level-file", "info"]
        errors: list[str] = []
        with _ONE_AT_A_TIME:
            result = dbtRunner(callbacks=[_error_collector(errors)]).invoke(command)
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


_SHORT_OPTIONS = {"--target": "-t"}


def _has_option(command: list[str], option: str) -> bool:
    short = _SHORT_OPTIONS.get(option)
    return any(arg in (option, short) or arg.startswith(option + "=") for arg in command)


def _option_value(command: list[str], option: str) -> str | None:
    """The value given to ``option`` in ``command`` (--opt V, --opt=V or its short form)."""
    names = (option, _SHORT_OPTIONS.get(option))
    for index, arg in enumerate(command):
        if arg in names and index + 1 < len(command):
            return command[index + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def _pop_option(command: list[str], option: str) -> str | None:
    """Remove ``option`` and its value from ``command``; return the value."""
    value = _option_value(command, option)
    for index, arg in enumerate(command):
        if arg == option:
            del command[index : index + 2]
            break
        if arg.startswith(option + "="):
            del command[index]
            break
    return value


def _given_vars(command: list[str]) -> dict[str, Any]:
    """The --vars already in ``command`` (YAML, as dbt reads them), for the profile."""
    text = _option_value(command, "--vars")
    value = yaml.safe_load(text) if text else None
    return value if isinstance(value, dict) else {}


def project_vars(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """dbt_project.yml's vars as dbt's own project loader reads them (dbt renders a var's
    value only where a model uses it, so this is what `var()` starts from)."""
    return copy.deepcopy(_loaded_vars(project_dir))


@functools.cache
def _loaded_vars(project_dir: Path) -> dict[str, Any]:
    from dbt.config.project import PartialProject

    partial = PartialProject.from_project_root(str(project_dir))
    return dict(partial.project_dict.get("vars") or {})


def explain_dbt_error(text: str, database: Database) -> str:
    """dbt's error text, made actionable: connection failures get the fix spelled out
    (a missing profile never reaches dbt: `buildqueue.profile` says it); dbt's
    "> in macro ... > called by ..." call stack is dropped."""
    lowered = text.lower()
    if any(mark in lowered for mark in _CONNECTION_FAILURE_MARKS):
        return explain_connection_error(Exception(text), database)
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
