"""The README's deploy section, run as written against a database in Crystal Forge's shape.

`rehearse(server, workdir)` builds a scratch database on ``server`` with Crystal
Forge's tables and the spec's example (support.crystal_forge), then runs every `bash`
block of README.md's section "Deploying to a live Crystal Forge database" with bash,
the way an operator would: in the project folder, `.venv/bin` first on PATH, a HOME of
its own (the blocks write ~/.dbt/profiles.yml), the libpq variables pointing at the
scratch database and nothing else of the harness's environment. It then runs the
blocks' dbt commands a second time, snapshotting the catalog before and after. The
caller checks the outcome while the context is open; on exit the scratch database and
the reader role the README creates are dropped, even when something failed.

Only the commands come from the README; `text` blocks there are output examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from buildqueue.database import Database
from buildqueue.paths import PROJECT_DIR
from support import crystal_forge

README = PROJECT_DIR / "README.md"
DEPLOY_SECTION = "Deploying to a live Crystal Forge database"
READER_ROLE = "grafana_reader"
"""The reader role the README's grant block creates; the checks use it."""
VIEW_SCHEMA = "monitoring"
"""Where the prod target builds the view (profiles.yml.example, BUILDQUEUE_SCHEMA unset)."""
VIEW = "view_build_queue_status"
DATABASE_PREFIX = "buildqueue_rehearsal"
BLOCK_TIMEOUT_SECONDS = 900
_INHERITED_PREFIXES = ("PG", "DBT_", "BUILDQUEUE_")
"""Environment variables an operator's shell would not have: the harness's own."""
_DBT_COMMAND = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*dbt\s")
_REDIRECT = re.compile(r">\s*([^\s|&;>]+)")
_CREATE_ROLE = re.compile(r"\bcreate\s+role\s+\"?([A-Za-z_][A-Za-z0-9_$]*)", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RehearsalUnavailable(Exception):
    """The rehearsal cannot run on this server; the message says why."""


@dataclass
class BlockRun:
    """One README block (or one command of it) as bash ran it."""

    script: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """What it printed: stdout, then stderr (dbt logs to stdout, ./run to both)."""
        return self.stdout + self.stderr

    def describe(self) -> str:
        """The commands, the exit code and the output's tail, for a failure message."""
        tail = "\n".join(self.output.strip().splitlines()[-40:])
        return f"$ {self.script.strip()}\n(exit {self.returncode})\n{tail}"


@dataclass
class Rehearsal:
    """What the rehearsal did; its database stays reachable until the context exits."""

    server: Database
    database: Database
    blocks: list[str]
    first_deploy: list[BlockRun] = field(default_factory=list)
    second_deploy: list[BlockRun] = field(default_factory=list)
    crystal_forge_indexes: dict[str, str] = field(default_factory=dict)
    catalog_after_first: dict[str, list[tuple]] = field(default_factory=dict)
    catalog_after_second: dict[str, list[tuple]] = field(default_factory=dict)
    redirected: dict[str, str | None] = field(default_factory=dict)
    """Files the blocks write with `>`: their content before the rehearsal (None: absent)."""
    seconds: float = 0.0

    def failed_run(self) -> BlockRun | None:
        """The first block or command that failed, if any (the rehearsal stops there)."""
        runs = [*self.first_deploy, *self.second_deploy]
        return next((run for run in runs if run.returncode != 0), None)

    def output(self) -> str:
        """Everything the first deploy printed."""
        return "\n".join(run.output for run in self.first_deploy)


def deploy_section(readme: str) -> str:
    """The text of README's deploy section (its heading to the next `## ` heading)."""
    match = re.search(
        rf"^## {re.escape(DEPLOY_SECTION)}\s*$(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL
    )
    if match is None:
        raise LookupError(
            f"README.md has no section '## {DEPLOY_SECTION}'. Fix: restore the heading, or "
            f"change DEPLOY_SECTION in {Path(__file__).name} to the section's new name."
        )
    return match[1]


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced blocks of ``language`` (```bash ... ```), in order."""
    fence = re.compile(rf"^```{re.escape(language)}[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
    return [match[1] for match in fence.finditer(text)]


def dbt_commands(blocks: list[str]) -> list[str]:
    """The blocks' commands that run dbt, continuation lines joined, in order."""
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if _DBT_COMMAND.match(line):
                commands.append(line.strip())
    return commands


def created_roles(blocks: list[str]) -> list[str]:
    """The roles the blocks create, and the reader role: cluster-wide, dropped at the end."""
    return sorted(
        {READER_ROLE, *(name for block in blocks for name in _CREATE_ROLE.findall(block))}
    )


def redirect_targets(blocks: list[str]) -> list[str]:
    """Files the blocks write with `>` (relative to the project folder)."""
    return sorted({target for block in blocks for target in _REDIRECT.findall(block)})


def operator_environment(database: Database, home: Path) -> dict[str, str]:
    """The shell an operator runs the README in: venv first on PATH, own HOME, PG* only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["HOME"] = str(home)
    env.update(database.env())
    return env


def run_script(script: str, env: dict[str, str]) -> BlockRun:
    """Run ``script`` with bash -c under `set -euo pipefail` in the project folder."""
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_SECONDS,
            check=False,
        )
        returncode, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
    except subprocess.TimeoutExpired as error:
        returncode = -1
        stdout = str(error.stdout or "")
        stderr = f"{error.stderr or ''}\n(timed out after {BLOCK_TIMEOUT_SECONDS} s)"
    elapsed = time.perf_counter() - started
    return BlockRun(script, returncode, _ANSI.sub("", stdout), _ANSI.sub("", stderr), elapsed)


@contextmanager
def rehearse(
    server: Database, workdir: Path, blocks: list[str] | None = None
) -> Iterator[Rehearsal]:
    """Build a Crystal Forge database on ``server``, deploy twice as the README says.

    ``blocks`` replaces the README's bash blocks (to try a change before writing it there).

    Raises `RehearsalUnavailable` before touching anything when the server already has a
    role the blocks create (a user's server: their role is not ours to drop) or the user
    may not create databases and roles. On the embedded server, what an interrupted run
    left behind is dropped first.
    """
    if blocks is None:
        blocks = code_blocks(deploy_section(README.read_text()), "bash")
    roles = created_roles(blocks)
    _clear_embedded_leftovers(server, roles)
    with server.connect() as conn:
        existing = [role for role in roles if _role_exists(conn, role)]
        if existing:
            raise RehearsalUnavailable(
                f"role {', '.join(existing)} already exists on {server.describe()}; the "
                "rehearsal creates and drops it, so it does not run against a server that has it"
            )
        can_create = conn.execute(
            "select rolsuper or (rolcreatedb and rolcreaterole) from pg_roles"
            " where rolname = current_user"
        ).fetchone()
        if not (can_create and can_create[0]):
            raise RehearsalUnavailable(
                f"user {server.user} on {server.describe()} may not create databases and "
                "roles, which the rehearsal needs (a scratch database, the README's reader "
                "role). Fix: run the suite as a user with CREATEDB and CREATEROLE"
            )
    redirected = {name: _read_or_none(PROJECT_DIR / name) for name in redirect_targets(blocks)}
    started = time.perf_counter()
    database = crystal_forge.create_scratch_database(server, DATABASE_PREFIX)
    rehearsal = Rehearsal(server, database, blocks, redirected=redirected)
    try:
        crystal_forge.load_example(database)
        with database.connect() as conn:
            rehearsal.crystal_forge_indexes = source_indexes(conn)
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = operator_environment(database, home)
        _run_all(blocks, env, rehearsal.first_deploy)
        if rehearsal.failed_run() is None:
            with database.connect() as conn:
                rehearsal.catalog_after_first = catalog(conn)
            _run_all(dbt_commands(blocks), env, rehearsal.second_deploy)
            with database.connect() as conn:
                rehearsal.catalog_after_second = catalog(conn)
        rehearsal.seconds = time.perf_counter() - started
        yield rehearsal
    finally:
        _clean_up(server, database, roles, redirected)


def _run_all(scripts: list[str], env: dict[str, str], runs: list[BlockRun]) -> None:
    """Run the scripts in order; stop after the first that fails, as an operator would."""
    for script in scripts:
        runs.append(run_script(script, env))
        if runs[-1].returncode != 0:
            return


def _clean_up(
    server: Database, database: Database, roles: list[str], redirected: dict[str, str | None]
) -> None:
    """Drop the scratch database and the roles; put redirected files back.

    Each step runs even when an earlier one failed: roles are cluster-wide and must not
    outlive the test, and the project folder must not keep a file the blocks wrote.
    """
    try:
        try:
            with database.connect() as conn:
                for role in roles:
                    if _role_exists(conn, role):
                        conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
        finally:
            crystal_forge.drop_database(server, database)
    finally:
        try:
            with server.connect() as conn:
                for role in roles:
                    if _role_exists(conn, role):
                        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        finally:
            for name, content in redirected.items():
                path = PROJECT_DIR / name
                if content is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_text(content)


def _clear_embedded_leftovers(server: Database, roles: list[str]) -> None:
    """On the project's own embedded server, drop what an interrupted rehearsal left.

    A user's server is never cleared this way: there the roles may be theirs.
    """
    if server.backend != "embedded":
        return
    with server.connect() as conn:
        leftovers = [
            row[0]
            for row in conn.execute(
                "select datname from pg_database where datname like %s",
                [f"{DATABASE_PREFIX}\\_%"],
            )
        ]
        for name in leftovers:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
        for role in roles:
            if _role_exists(conn, role):
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    return bool(conn.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone())


def _read_or_none(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def source_indexes(conn: psycopg.Connection) -> dict[str, str]:
    """Index name -> definition, for every index on the Crystal Forge tables."""
    rows = conn.execute(
        """
        select i.relname, pg_get_indexdef(x.indexrelid)
        from pg_index as x
        join pg_class as i on i.oid = x.indexrelid
        join pg_class as t on t.oid = x.indrelid
        where t.relnamespace = %s::regnamespace and t.relname = any(%s)
        order by 1
        """,
        [crystal_forge.SOURCE_SCHEMA, list(crystal_forge.TABLES)],
    ).fetchall()
    return dict(rows)


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """What a deploy may change, by kind: indexes, statistics, relations and ACLs.

    Names and definitions only (no oids), so an object dropped and recreated the same
    way compares equal, and any change of definition, grant or owner does not.
    """
    schemas = [crystal_forge.SOURCE_SCHEMA, VIEW_SCHEMA]
    queries = {
        "schemas": """
            select nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '')
            from pg_namespace where nspname = any(%(schemas)s) order by 1
        """,
        "relations": """
            select n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner),
                coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''),
                coalesce(obj_description(c.oid, 'pg_class'), '')
            from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = any(%(schemas)s) order by 1, 2
        """,
        "indexes": """
            select n.nspname, i.relname, pg_get_indexdef(i.oid), x.indisvalid
            from pg_index as x
            join pg_class as i on i.oid = x.indexrelid
            join pg_namespace as n on n.oid = i.relnamespace
            where n.nspname = any(%(schemas)s) order by 1, 2
        """,
        "statistics": """
            select n.nspname, s.stxname, pg_get_statisticsobjdef(s.oid),
                coalesce(s.stxstattarget::int, -1)
            from pg_statistic_ext as s join pg_namespace as n on n.oid = s.stxnamespace
            where n.nspname = any(%(schemas)s) order by 1, 2
        """,
        "views": """
            select n.nspname, c.relname, pg_get_viewdef(c.oid)
            from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = any(%(schemas)s) and c.relkind in ('v', 'm') order by 1, 2
        """,
        "columns": """
            select n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                coalesce(a.attacl::text, '')
            from pg_attribute as a
            join pg_class as c on c.oid = a.attrelid
            join pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = any(%(schemas)s) and a.attnum > 0 and not a.attisdropped
                and c.relkind in ('r', 'v', 'm', 'p')
            order by 1, 2, 3
        """,
        "default privileges": """
            select pg_get_userbyid(defaclrole), coalesce(defaclnamespace::regnamespace::text, ''),
                defaclobjtype::text, defaclacl::text
            from pg_default_acl order by 1, 2, 3
        """,
    }
    return {
        kind: [tuple(row) for row in conn.execute(query, {"schemas": schemas}).fetchall()]
        for kind, query in queries.items()
    }
