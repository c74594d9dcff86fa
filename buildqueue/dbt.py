"""dbt in-process, as dbt-core's functional tests run it: a profiles.yml written from a dict
(the password only as env_var('DBT_ENV_SECRET_...'), never on disk), `dbtRunner().invoke`."""

import functools
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest.mock import patch

import yaml

from buildqueue.database import ConnectionFailed, Database, explain_connection_error
from buildqueue.paths import PROFILES_TEMPLATE, PROJECT_DIR

PROFILE_NAME = "buildqueue"
PASSWORD_ENV = "DBT_ENV_SECRET_BUILDQUEUE_PASSWORD"
VIEW = "view_build_queue_status"
SCHEMA_ENV = "BUILDQUEUE_SCHEMA"
_ONE_AT_A_TIME = threading.RLock()


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


def profile_dict(database: Database, target: str, schema: str | None = None) -> dict[str, Any]:
    """The profiles.yml dbt gets: ``target`` of the profile, connected to ``database``."""
    folder = os.environ.get("DBT_PROFILES_DIR")
    source = Path(folder) / "profiles.yml" if folder else PROFILES_TEMPLATE
    try:
        profile = (yaml.safe_load(source.read_text()) or {}).get(PROFILE_NAME)
    except (OSError, yaml.YAMLError, AttributeError):
        profile = None
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
    given = {"host": database.host, "user": database.user, "dbname": database.dbname}
    given |= {"schema": schema} if schema else {}
    # a value that looks like Jinja is read back as is
    output = dict(outputs[target]) | {
        key: "{{ " + json.dumps(value) + " }}" if "{" in value else value
        for key, value in given.items()
    }
    output |= {"port": database.port, "password": f"{{{{ env_var('{PASSWORD_ENV}', '') }}}}"}
    return {PROFILE_NAME: {"target": target, "outputs": {target: output}}}


@dataclass
class DbtProject:
    """The dbt project in this repository, bound to one database and target."""

    database: Database
    target: str = "dev"
    schema: str | None = None
    quiet: bool = True
    project_dir: Path = PROJECT_DIR
    vars: dict[str, Any] = field(default_factory=dict)
    """Vars given to every command (a command's own vars win)."""
    _parsed: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False, compare=False)

    def invoke(
        self, *args: str, vars: dict[str, Any] | None = None, check: bool = True
    ) -> DbtOutcome:
        """Run one dbt command (its --target/--vars win); `DbtError` on failure if ``check``."""
        from dbt.cli.main import dbtRunner

        command, options = list(args), {}
        for flag in ("--target", "-t", "--vars"):  # given in args: they win
            if flag in command[:-1]:
                options[flag.strip("-")[0]] = command.pop(command.index(flag) + 1)
                command.remove(flag)
        target = options.get("t") or self.target
        given = yaml.safe_load(options.get("v") or "{}")
        all_vars = {**self.vars, **(vars or {}), **(given if isinstance(given, dict) else {})}
        if "--project-dir" not in command:
            command += ["--project-dir", str(self.project_dir)]
        command += ["--target", target, *(["--vars", json.dumps(all_vars)] if all_vars else [])]
        if self.quiet:  # DbtError says what failed: dbt need not say it first
            command += ["--log-level", "none", "--log-level-file", "info"]
        errors: list[str] = []  # error events: a failed run-operation says why only there
        collect = [lambda e: e.info.level == "error" and e.info.msg and errors.append(e.info.msg)]
        with tempfile.TemporaryDirectory(prefix="buildqueue-profile-") as folder:
            self._write_profile(Path(folder), target)
            secret = {PASSWORD_ENV: self.database.password}  # for this invocation only
            with _ONE_AT_A_TIME, patch.dict(os.environ, secret):
                result = dbtRunner(callbacks=collect).invoke([*command, "--profiles-dir", folder])
        if isinstance(result.exception, KeyboardInterrupt | SystemExit):  # Ctrl-C, SIGTERM
            raise result.exception
        outcome = _outcome(result, self.database, errors)
        outcome.label = " ".join([*args, *(["--vars", json.dumps(vars)] if vars else [])])
        if check and not outcome.success:
            raise (DbtConnectionError if lost_connection(outcome) else DbtError)(outcome.describe())
        return outcome

    def _write_profile(self, folder: Path, target: str | None = None) -> Path:
        profile = profile_dict(self.database, target or self.target, self.schema)
        (folder / "profiles.yml").write_text(yaml.safe_dump(profile))
        return folder

    def view_schema(self) -> str:
        """Where dbt builds the view: the project's schema, else what `dbt parse` made of it."""
        if self.schema:
            return self.schema
        key = (self.target, *map(str, map(os.environ.get, ["DBT_PROFILES_DIR", SCHEMA_ENV])))
        if key not in self._parsed:
            nodes = replace(self, vars={}).invoke("parse").result.result.nodes.values()
            self._parsed[key] = next(
                node.schema for node in nodes if node.resource_type == "model" and node.name == VIEW
            )
        return self._parsed[key]

    def settings(self, vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """The vars commands see: dbt_project.yml's, the project's, then ``vars``."""
        return {**project_vars(self.project_dir), **self.vars, **(vars or {})}

    def load_fixtures(self) -> DbtOutcome:
        """Load the example fixtures (refused by dbt on a production target)."""
        return self.invoke("seed", vars={"load_fixtures": True})

    def build(
        self, *extra: str, fixtures: bool = True, check: bool = True, vars: dict | None = None
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


def lost_connection(outcome: DbtOutcome) -> bool:
    """Whether dbt failed because it could not reach the database."""
    return any("Fix: start the server" in failure for failure in outcome.failures)


def _explain(text: str, database: Database) -> str:
    """dbt's error text without its call stack; a connection failure's fix spelled out."""
    if "connection to server" in text.lower() or "could not connect to server" in text.lower():
        return explain_connection_error(Exception(text), database)
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith(">"))


def _outcome(result: Any, database: Database, errors: list[str]) -> DbtOutcome:
    outcome = DbtOutcome(success=bool(result.success), result=result)
    if result.exception is not None:
        outcome.success = False
        outcome.failures.append(_explain(str(result.exception), database))
    for node_result in getattr(result.result, "results", None) or []:
        node = getattr(node_result, "node", None)
        name = getattr(node, "unique_id", None) or getattr(node_result, "unique_id", "?")
        status = str(getattr(node_result, "status", "")).lower()
        outcome.node_statuses[name] = status
        message = (getattr(node_result, "message", None) or "").strip()
        if status in {"error", "fail", "runtime error"}:
            message = message or (errors[-1].strip() if errors else "")
            outcome.failures.append(f"{name}: {_explain(message, database)}")
        elif status == "warn":
            outcome.warnings.append(f"{name}: {message}")
    return outcome
