"""Run README.md's deploy section as an operator would, on a database in Crystal Forge's shape:
every `bash` block, then their dbt commands again (a catalog after each); drop all on exit."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from buildqueue.database import Database
from buildqueue.paths import PROJECT_DIR
from support import crystal_forge, scratch

README = PROJECT_DIR / "README.md"
DEPLOY_SECTION = "Deploying to a live Crystal Forge database"
READER_ROLE = "grafana_reader"  # the README's grant block creates it
VIEW_SCHEMA = "monitoring"  # the prod target's (profiles.yml.example, BUILDQUEUE_SCHEMA unset)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RehearsalUnavailable(Exception):
    """The server cannot host the rehearsal (a role of its own exists, no CREATEROLE)."""


@dataclass
class BlockRun:
    script: str
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Rehearsal:
    database: Database
    blocks: list[str]
    runs: list[BlockRun] = field(default_factory=list)
    catalogs: list[dict[str, list[tuple]]] = field(default_factory=list)  # after each deploy
    indexes_before: dict[str, str] = field(default_factory=dict)

    def failed_run(self) -> BlockRun | None:
        return next((run for run in self.runs if run.returncode != 0), None)


def code_blocks(language: str) -> list[str]:
    """The bodies of the README deploy section's fenced blocks of ``language``, in order."""
    found = re.search(rf"^## {DEPLOY_SECTION}\n(.*?)(?=^## |\Z)", README.read_text(), re.M | re.S)
    if found is None:
        raise LookupError(f"README.md has no section '## {DEPLOY_SECTION}'")
    fence = re.compile(rf"^```{language}\n(.*?)^```$", re.M | re.S)
    return [match[1] for match in fence.finditer(found[1])]


def operator_environment(database: Database, home: Path) -> dict[str, str]:
    """The shell an operator runs the README in: venv first on PATH, own HOME, PG* only; dbt's
    artifacts and logs in that HOME (two rehearsals at once never share a target/)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBT_", "BUILDQUEUE"))}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env |= {"HOME": str(home), "DBT_TARGET_PATH": str(home / "target"),
            "DBT_LOG_PATH": str(home / "logs")}  # fmt: skip
    return {**env, **database.env()}


def run_script(script: str, env: dict[str, str]) -> BlockRun:
    """Run ``script`` with bash under `set -euo pipefail` in the project folder."""
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=PROJECT_DIR, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip
    return BlockRun(script, done.returncode, _ANSI.sub("", done.stdout), _ANSI.sub("", done.stderr))


@contextmanager
def rehearse(server: Database, home: Path) -> Iterator[Rehearsal]:
    """Deploy twice as the README says on a fresh Crystal Forge database on ``server``."""
    blocks = code_blocks("bash")
    roles = sorted({READER_ROLE, *re.findall(r"create role (\w+)", "\n".join(blocks))})
    with server.connect() as conn:
        if (left := _existing(conn, roles)) and server.backend != "embedded":  # may be theirs
            raise RehearsalUnavailable(f"role {left[0]} already exists on {server.describe()}")
        scratch.drop_roles(server, left)  # left by an interrupted run on our own server
        allowed = conn.execute("select rolsuper or (rolcreatedb and rolcreaterole) from pg_roles"
                               " where rolname = current_user").fetchone()  # fmt: skip
    if not (allowed and allowed[0]):
        raise RehearsalUnavailable(f"user {server.user} may not create databases and roles")
    database = crystal_forge.create_scratch_database(server, "buildqueue_rehearsal")
    rehearsal = Rehearsal(database, blocks)
    try:
        crystal_forge.load_example(database)
        env = operator_environment(database, home)
        with database.connect() as conn:
            rehearsal.indexes_before = source_indexes(conn)
        again = [line for block in blocks for line in block.splitlines() if line.startswith("dbt ")]
        for scripts in (blocks, again):
            for script in scripts:
                rehearsal.runs.append(run_script(script, env))
                if rehearsal.failed_run():
                    yield rehearsal
                    return
            with database.connect() as conn:
                rehearsal.catalogs.append(catalog(conn))
        yield rehearsal
    finally:
        scratch.drop_roles(database, roles)  # what they own or were granted there, then them
        crystal_forge.drop_database(server, database)


def _existing(conn: psycopg.Connection, roles: list[str]) -> list[str]:
    query = "select rolname from pg_roles where rolname = any(%s) order by 1"
    return [role for (role,) in conn.execute(query, [roles])]


def source_indexes(conn: psycopg.Connection) -> dict[str, str]:
    """Index name -> definition, for every index in Crystal Forge's schema."""
    query = "select indexname, indexdef from pg_indexes where schemaname = %s"
    return dict(conn.execute(query, [crystal_forge.SOURCE_SCHEMA]).fetchall())


CATALOG = {
    "schemas": """
        select nspname, pg_get_userbyid(nspowner), coalesce(nspacl::text, '')
        from pg_namespace where nspname = any(%(schemas)s)""",
    "relations": """
        select n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner),
            coalesce(c.relacl::text, ''), coalesce(c.reloptions::text, ''),
            coalesce(case when c.relkind = 'v' then pg_get_viewdef(c.oid) end, ''),
            coalesce(obj_description(c.oid, 'pg_class'), ''),
            (select coalesce(string_agg(
                a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum
             ), '') from pg_attribute as a
             where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
        from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
        where n.nspname = any(%(schemas)s)""",
    "indexes": "select schemaname, indexname, indexdef from pg_indexes"
    " where schemaname = any(%(schemas)s)",
    "default privileges": """
        select pg_get_userbyid(defaclrole), defaclnamespace::regnamespace::text,
            defaclobjtype::text, defaclacl::text from pg_default_acl""",
}  # what a deploy may change, by names and definitions (no oids)


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    schemas = [crystal_forge.SOURCE_SCHEMA, VIEW_SCHEMA]
    return {
        kind: sorted(tuple(row) for row in conn.execute(query, {"schemas": schemas}))
        for kind, query in CATALOG.items()
    }
