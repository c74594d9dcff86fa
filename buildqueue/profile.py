"""The dbt profile a `DbtProject` runs with: rendered by dbt, handed over with real values.

Which profile: $DBT_PROFILES_DIR/profiles.yml when set (a profile of your own), else
profiles.yml.example. dbt's own profile renderer (what `dbt` runs before every command)
renders the chosen target with the environment plus the database's libpq variables, so
`env_var()` and any other Jinja in it mean exactly what they mean to dbt, and the schema
the CLI reads the view from is the one dbt builds it in.

dbt then gets that target with its values written out (the password included) in a
profiles.yml of a private folder (0700, the file 0600) under .buildqueue, removed when the
process ends, and passed with --profiles-dir: the way dbt-core's functional-test fixtures
hand a test database to dbt. Nothing here changes os.environ.

Importing dbt to render takes seconds, so the rendered schema alone (never a credential)
is remembered in .buildqueue/profile-schemas.json with the variables it read, as dbt's
partial parsing remembers a profile's: while they are unchanged `./run show` imports no dbt.
"""

from __future__ import annotations

import atexit
import contextvars
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from buildqueue.paths import PROFILES_TEMPLATE, SCRATCH_DIR

PROFILE_NAME = "buildqueue"
PROFILES_DIR_ENV = "DBT_PROFILES_DIR"
PROFILES_FILE = "profiles.yml"
SECRET_ENV_PREFIX = "DBT_ENV_SECRET_"
"""dbt's prefix for secret variables: its renderer substitutes them without recording them."""
_JINJA_MARKS = ("{{", "{%", "{#")
SCHEMA_MEMO = SCRATCH_DIR / "profile-schemas.json"
MEMO_ENTRIES = 32
_private_root: Path | None = None


class ProfileError(Exception):
    """The profile cannot be rendered; the message says where and how to fix it."""


@dataclass(frozen=True)
class RenderedTarget:
    """One target of a profile, as dbt's renderer made it."""

    source: Path
    source_text: str
    name: str
    settings: dict[str, Any]
    """The target's keys and rendered values (credentials included), as profiles.yml has them."""
    reads: dict[str, str | None]
    """The environment variables the rendering depended on and their values then (None:
    unset, the default was used): every one dbt recorded reading, as for its partial
    parsing, plus every secret one (those it does not record)."""
    schema_reads: dict[str, str | None] | None
    """The same for the `schema` value alone; None when it may hold a secret."""
    key: str
    """The file, target and --vars rendered (a hash), for `remembered_schema`."""

    @property
    def schema(self) -> str:
        """The schema dbt builds in with this target."""
        schema = self.settings.get("schema")
        if not isinstance(schema, str) or not schema:
            raise ProfileError(
                f"Target '{self.name}' of profile '{PROFILE_NAME}' in {self.source} has no "
                "schema. Fix: give it a `schema:` (where dbt builds the view)."
            )
        return schema

    def holds_for(self, source_text: str, env: Mapping[str, str]) -> bool:
        """True while the profile file and every variable the rendering read are unchanged."""
        return source_text == self.source_text and _reads(self.reads, env) == self.reads


def profile_source(profiles_dir: str | None = None) -> Path:
    """The profiles.yml to render: ``profiles_dir``'s (--profiles-dir), else
    $DBT_PROFILES_DIR's, else profiles.yml.example."""
    folder = profiles_dir or os.environ.get(PROFILES_DIR_ENV)
    return Path(folder) / PROFILES_FILE if folder else PROFILES_TEMPLATE


def read_source(source: Path) -> str:
    """The profile file's text ("" when there is none: dbt then finds no profile)."""
    try:
        return source.read_text()
    except OSError:
        return ""


def render_target(
    source: Path, text: str, target: str, env: Mapping[str, str], cli_vars: Mapping[str, Any]
) -> RenderedTarget:
    """Render ``target`` of the project's profile (``text``, read from ``source``) with
    dbt's own renderer in ``env``: dbt's env_var reads its invocation context, which is set
    here, in a copy of the current context, and nowhere else."""
    return contextvars.copy_context().run(_render, source, text, target, env, cli_vars)


def _render(
    source: Path, text: str, target: str, env: Mapping[str, str], cli_vars: Mapping[str, Any]
) -> RenderedTarget:
    from dbt.clients.yaml_helper import load_yaml_text
    from dbt.config.profile import Profile
    from dbt.config.renderer import ProfileRenderer
    from dbt_common.context import set_invocation_context
    from dbt_common.exceptions import DbtBaseException

    set_invocation_context(dict(env))
    renderer, schema_renderer = ProfileRenderer(dict(cli_vars)), ProfileRenderer(dict(cli_vars))
    try:
        profiles = (load_yaml_text(text) if text else None) or {}
        if not isinstance(profiles, dict) or not profiles.get(PROFILE_NAME):
            raise ProfileError(
                f"Could not find profile named '{PROFILE_NAME}' in {source}. Fix: copy "
                f"profiles.yml.example to ~/.dbt/profiles.yml, point {PROFILES_DIR_ENV} at a "
                f"folder holding it, or unset {PROFILES_DIR_ENV} to use profiles.yml.example."
            )
        name, settings = Profile.render_profile(
            profiles[PROFILE_NAME], PROFILE_NAME, target, renderer
        )
        raw_schema = profiles[PROFILE_NAME]["outputs"][name].get("schema")
        schema_renderer.render_value(raw_schema)
    except DbtBaseException as error:
        raise ProfileError(_explain(error, source, target)) from error
    return RenderedTarget(
        source=source,
        source_text=text,
        name=name,
        settings=settings,
        reads=_reads(renderer.ctx_obj.env_vars, env),
        schema_reads=None
        if SECRET_ENV_PREFIX in str(raw_schema)
        else _reads(schema_renderer.ctx_obj.env_vars, env, secrets=False),
        key=_key(source, text, target, cli_vars),
    )


def _reads(
    names: Iterable[str], env: Mapping[str, str], *, secrets: bool = True
) -> dict[str, str | None]:
    read = {name: env.get(name) for name in names}
    if secrets:
        read |= {key: value for key, value in env.items() if key.startswith(SECRET_ENV_PREFIX)}
    return read


def _key(source: Path, text: str, target: str, cli_vars: Mapping[str, Any]) -> str:
    rendered = json.dumps([str(source), text, target, cli_vars], sort_keys=True, default=str)
    return hashlib.sha256(rendered.encode()).hexdigest()


def remembered_schema(
    source: Path, text: str, target: str, env: Mapping[str, str], cli_vars: Mapping[str, Any]
) -> str | None:
    """The schema an earlier rendering of the same file, target and --vars gave, if every
    variable it read still has its value: `./run show` then needs no dbt import (seconds)."""
    try:
        entry = json.loads(SCHEMA_MEMO.read_text()).get(_key(source, text, target, cli_vars))
    except (OSError, ValueError, AttributeError):
        return None
    if not entry or _reads(entry["reads"], env, secrets=False) != entry["reads"]:
        return None
    return str(entry["schema"])


def remember_schema(rendered: RenderedTarget) -> None:
    """Keep the rendered schema and what it read for `remembered_schema` (the newest
    `MEMO_ENTRIES` renderings; the schema's own variables only, never credentials)."""
    if rendered.schema_reads is None:
        return
    try:
        memo = json.loads(SCHEMA_MEMO.read_text())
    except (OSError, ValueError):
        memo = {}
    memo = memo if isinstance(memo, dict) else {}
    memo.pop(rendered.key, None)
    memo[rendered.key] = {"schema": rendered.schema, "reads": rendered.schema_reads}
    partial = SCHEMA_MEMO.with_name(f"{SCHEMA_MEMO.name}.{os.getpid()}")
    try:
        SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(dict(list(memo.items())[-MEMO_ENTRIES:]), indent=1))
        os.replace(partial, SCHEMA_MEMO)
    except OSError:
        pass  # only a shortcut: the next lookup renders again


def _explain(error: Exception, source: Path, target: str) -> str:
    """dbt's words (its message, without the "Parsing Error" heading), where, and the fix."""
    message = str(getattr(error, "msg", None) or error)
    words = " ".join(line.strip() for line in message.splitlines() if line.strip())
    where = f"target '{target}' of profile '{PROFILE_NAME}' in {source}"
    if "does not have a target named" in words:
        fix = "use a target that profile defines (--target)"
        if source != PROFILES_TEMPLATE:
            fix += f", or unset {PROFILES_DIR_ENV} to use profiles.yml.example (dev, ci, prod)"
    elif "Env var required but not provided" in words:
        fix = "set that variable, or give it a default in the profile: env_var('NAME', 'default')"
    else:
        fix = f"correct {where} (`dbt debug --target {target}` shows what dbt makes of it)"
    return f"{words} ({where}). Fix: {fix}."


def write_profile(name: str, settings: Mapping[str, Any]) -> Path:
    """A private folder holding a profiles.yml whose only target is ``name`` with these
    values, for --profiles-dir. Values dbt would take for Jinja are quoted as Jinja
    strings, so dbt reads back exactly these values."""
    content = yaml.safe_dump(
        {PROFILE_NAME: {"target": name, "outputs": {name: _literal(dict(settings))}}},
        sort_keys=False,
    )
    folder = _root() / hashlib.sha256(content.encode()).hexdigest()[:16]
    path = folder / PROFILES_FILE
    if not path.exists():
        folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(content)
        os.replace(path.with_suffix(".tmp"), path)
    return folder


def _literal(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _literal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_literal(item) for item in value]
    if isinstance(value, str) and any(mark in value for mark in _JINJA_MARKS):
        return "{{ " + json.dumps(value, ensure_ascii=False) + " }}"
    return value


def _root() -> Path:
    """This process's private folder for written profiles (removed at exit)."""
    global _private_root
    if _private_root is None or not _private_root.is_dir():
        SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
        _private_root = Path(tempfile.mkdtemp(prefix="profiles-", dir=SCRATCH_DIR))
        atexit.register(shutil.rmtree, _private_root, ignore_errors=True)
    return _private_root
