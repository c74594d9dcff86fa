"""Run dbt in-process against a `Database`, as dbt-core's own functional tests do: a
profiles.yml written from a dict into a temporary folder, then `dbtRunner().invoke`.

The dict is the target of profiles.yml.example (or $DBT_PROFILES_DIR's) with the database's
host, port, user and dbname; the password is ``{{ env_var('DBT_ENV_SECRET_...') }}``, set
only in the environment of the invocation: no credential is ever written (and dbt scrubs
DBT_ENV_SECRET_ values from its logs). Schemas and vars are read from what dbt parsed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from buildqueue.database import ConnectionFailed, Database, explain_connection_error
from buildqueue.paths import PROFILES_TEMPLATE, PROJECT_DIR

PROFILE_NAME = "buildqueue"
PASSWORD_ENV = "DBT_ENV_SECRET_BUILDQUEUE_PASSWORD"
VIEW = "view_build_queue_status"
FAILED_STATUSES = {"error", "fail", "runtime error"}
_ONE_AT_A_TIME = threading.RLock()
_CONNECTION_MARKS = ("connection to server", "could not connect to server")


class DbtError(Exception):
    """A dbt command failed; the message lists what failed and dbt's own words."""


class DbtConnectionError(DbtError, ConnectionFailed):
    """dbt could not reach the database (a restart may cure it)."""


@dataclass
class DbtOutcome:
    """What one dbt invocation did."""

    success: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    node_statuses: dict[str, str] = field(default_factory=dict)
    result: Any = None
    label: str = ""

    def describe(self) -> str:
        """One header line (the command as asked for), then what failed and warned."""
        lines = [f"dbt {self.label}: {'ok' if self.success else 'FAILED'}"]
        lines += [f"  failed: {item}" for item in self.failures]
        return "\n".join(lines + [f"  warned: {item}" for item in self.warnings])


def profile_source() -> Path:
    """$DBT_PROFILES_DIR/profiles.yml when set (a profile of your own), else the example."""
    folder = os.environ.get("DBT_PROFILES_DIR")
    return Path(folder) / "profiles.yml" if folder else PROFILES_TEMPLATE


def profile_dict(database: Database, target: str, schema: str | None = None) -> dict[str, Any]:
    """The profiles.yml dbt gets: ``target`` of the profile, connected to ``database``."""
    source = profile_source()
    try:
        profiles = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError):
        profiles = None
    profile = profiles.get(PROFILE_NAME) if isinstance(profiles, dict) else None
    if not isinstance(profile, dict):
        raise DbtError(
            f"Could not find profile named '{PROFILE_NAME}' in {source}. Fix: copy "
            "profiles.yml.example to that folder as profiles.yml, or unset DBT_PROFILES_DIR."
        )
    outputs = profile.get("outputs") or {}
    if target not in outputs:
        raise DbtError(
            f"The profile '{PROFILE_NAME}' in {source} does not have a target named "
            f"'{target}'. Fix: use a target it defines (--target {' | '.join(outputs)})."
        )
    output = dict(outputs[target])
    given = {"host": database.host, "user": database.user, "dbname": database.dbname}
    output.update({key: _literal(value) for key, value in given.items()}, port=database.port)
    output["password"] = f"{{{{ env_var('{PASSWORD_ENV}', '') }}}}"
    if schema:
        output["schema"] = _literal(schema)
    return {PROFILE_NAME: {"target": target, "outputs": {target: output}}}


def _literal(value: str) -> str:
    """A value dbt reads back as is, even if it looks like Jinja."""
    return "{{ " + json.dumps(value) + " }}" if "{" in value else value


@contextlib.contextmanager
def _password_in_environment(password: str) -> Iterator[None]:
    """The password where the profile's env_var() finds it, for one invocation only."""
    saved = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = password
    try:
        yield
    finally:
        del os.environ[PASSWORD_ENV]
        os.environ.update({PASSWORD_ENV: saved} if saved is not None else {})


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
    _parsed: dict[tuple[str, str, str | None], str] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def invoke(
        self, *args: str, vars: dict[str, Any] | None = None, check: bool = True
    ) -> DbtOutcome:
        """Run one dbt command; raise `DbtError` on failure when ``check``. A --target,
        --vars or --project-dir in ``args`` wins over the project's; Ctrl-C propagates."""
        from dbt.cli.main import dbtRunner

        command = list(args)
        target = _pop_option(command, "--target", "-t") or self.target
        given = yaml.safe_load(_pop_option(command, "--vars") or "{}")
        all_vars = {**self.vars, **(vars or {}), **(given if isinstance(given, dict) else {})}
        if "--project-dir" not in command:
            command += ["--project-dir", str(self.project_dir)]
        command += ["--target", target, *(["--vars", json.dumps(all_vars)] if all_vars else [])]
        if self.quiet:  # DbtError says what failed: dbt need not say it first
            command += ["--log-level", "none", "--log-level-file", "info"]
        errors: list[str] = []
        with tempfile.TemporaryDirectory(prefix="buildqueue-profile-") as folder:
            profile = profile_dict(self.database, target, self.schema)
            (Path(folder) / "profiles.yml").write_text(yaml.safe_dump(profile))
            with _ONE_AT_A_TIME, _password_in_environment(self.database.password):
                runner = dbtRunner(callbacks=[_error_collector(errors)])
                result = runner.invoke([*command, "--profiles-dir", folder])
        if isinstance(result.exception, KeyboardInterrupt | SystemExit):  # Ctrl-C, SIGTERM
            raise result.exception
        outcome = _outcome(result, self.database, errors)
        outcome.label = " ".join([*args, *(["--vars", json.dumps(vars)] if vars else [])])
        if check and not outcome.success:
            error = DbtConnectionError if lost_connection(outcome) else DbtError
            raise error(outcome.describe())
        return outcome

    @property
    def profiles_dir(self) -> Path:
        """A folder holding this project's profiles.yml, for a dbt subprocess (sqlfluff);
        it holds no password: give the subprocess PASSWORD_ENV. Removed at exit."""
        folder = Path(tempfile.mkdtemp(prefix="buildqueue-profile-"))
        profile = profile_dict(self.database, self.target, self.schema)
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))
        atexit.register(shutil.rmtree, folder, True)
        return folder

    def view_schema(self) -> str:
        """The schema dbt builds the view in: this project's, else what `dbt parse` made of
        the target's `schema` (so a schema is written once, in the profile)."""
        if self.schema:
            return self.schema
        key = (self.target, str(profile_source()), os.environ.get("BUILDQUEUE_SCHEMA"))
        if key not in self._parsed:
            outcome = replace(self, vars={}).invoke("parse")
            nodes = outcome.result.result.nodes.values()
            self._parsed[key] = next(
                node.schema for node in nodes if node.resource_type == "model" and node.name == VIEW
            )
        return self._parsed[key]

    def settings(self, vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """The vars this project's commands see: dbt_project.yml's, then the project's
        vars, then ``vars`` (dbt's --vars order)."""
        return {**project_vars(self.project_dir), **self.vars, **(vars or {})}

    def load_fixtures(self) -> DbtOutcome:
        """Load the example fixtures (refused by dbt on a production target)."""
        return self.invoke("seed", vars={"load_fixtures": True})

    def build(
        self,
        *extra: str,
        fixtures: bool = True,
        check: bool = True,
        vars: dict[str, Any] | None = None,
    ) -> DbtOutcome:
        """dbt build: models, data tests and unit tests (seeds loaded first when fixtures)."""
        if fixtures:
            self.invoke("seed", vars={**(vars or {}), "load_fixtures": True})
        args = ["build", *extra, *(["--exclude", "resource_type:seed"] if fixtures else [])]
        return self.invoke(*args, vars={**(vars or {}), "load_fixtures": fixtures}, check=check)


def project_vars(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    """dbt_project.yml's vars as dbt's project loader reads them (a fresh copy)."""
    return json.loads(_loaded_vars(project_dir))


@functools.cache
def _loaded_vars(project_dir: Path) -> str:
    from dbt.config.project import PartialProject

    partial = PartialProject.from_project_root(str(project_dir))
    return json.dumps(partial.project_dict.get("vars") or {})


def _pop_option(command: list[str], *names: str) -> str | None:
    """Remove ``--opt V`` / ``--opt=V`` from ``command``; return V."""
    for index, arg in enumerate(command):
        if arg in names and index + 1 < len(command):
            value = command[index + 1]
            del command[index : index + 2]
            return value
        if arg.startswith(names[0] + "="):
            del command[index]
            return arg.split("=", 1)[1]
    return None


def explain_dbt_error(text: str, database: Database) -> str:
    """dbt's error text, a connection failure's fix spelled out, without dbt's call stack."""
    if any(mark in text.lower() for mark in _CONNECTION_MARKS):
        return explain_connection_error(Exception(text), database)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith(">"))


def lost_connection(outcome: DbtOutcome) -> bool:
    """Whether dbt failed because it could not reach the database."""
    return any("Fix: start the server" in failure for failure in outcome.failures)


def _error_collector(errors: list[str]) -> Any:
    """Keep error-level events' text (a failed run-operation says why only there)."""

    def collect(event: Any) -> None:
        if getattr(event.info, "level", "") == "error" and event.info.msg:
            errors.append(str(event.info.msg))

    return collect


def _outcome(result: Any, database: Database, errors: list[str]) -> DbtOutcome:
    outcome = DbtOutcome(success=bool(result.success), result=result)
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
