"""Nothing is left behind: on a user's server (scratch names, the leftovers guard), and on
this machine when the CLI is stopped by Ctrl-C, SIGTERM or SIGKILL (no embedded server
keeps running, no credential stays on disk).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from psycopg import sql

from buildqueue.database import Database, free_port, start_embedded
from buildqueue.paths import PROJECT_DIR
from support import scratch
from support.scratch import (
    NAME_LIMIT,
    PREFIX,
    Inventory,
    LeftBehind,
    nothing_left_behind,
    scratch_name,
)


def test_scratch_names_are_this_sessions_and_fit_postgresql() -> None:
    assert scratch_name("grants") == f"{PREFIX}_grants" == scratch_name("grants")
    assert len(PREFIX) == len("bqt_") + 8
    longest = "x" * (NAME_LIMIT - len(PREFIX) - 1)
    assert len(scratch_name(longest)) == NAME_LIMIT
    for bad in (longest + "x", "Grants", "drop; role", "", "1st"):
        with pytest.raises(ValueError, match="Fix: use lowercase letters"):
            scratch_name(bad)


def test_a_token_from_the_environment_must_be_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scratch.TOKEN_ENV, "0badc0de")
    assert scratch.session_prefix() == "bqt_0badc0de"
    monkeypatch.setenv(scratch.TOKEN_ENV, "../etc")
    with pytest.raises(ValueError, match="is not 8 lowercase hex digits"):
        scratch.session_prefix()


def test_the_guard_names_what_a_run_left_behind(database: Database) -> None:
    """A schema and a role outside the scratch names are reported (and left alone)."""
    stranger = f"left_behind_{PREFIX.removeprefix('bqt_')}"
    try:
        with (
            pytest.raises(LeftBehind) as raised,
            nothing_left_behind(database),
            database.connect() as conn,
        ):
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(stranger)))
            conn.execute(sql.SQL("create role {}").format(sql.Identifier(stranger)))
        message = str(raised.value)
        assert f"schema {stranger} (left behind)" in message
        assert f"role {stranger} (left behind)" in message
        assert "Fix: name every schema or role a test creates with a scratch fixture" in message
    finally:
        with database.connect() as conn:
            conn.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(stranger)))
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(stranger)))


def test_the_guard_drops_and_names_scratch_objects_nobody_dropped(database: Database) -> None:
    stray = scratch_name("stray")
    with (
        pytest.raises(LeftBehind) as raised,
        nothing_left_behind(database),
        database.connect() as conn,
    ):
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(stray)))
    assert f"schema {stray} (not dropped by its fixture; dropped now)" in str(raised.value)
    assert stray not in Inventory.of(database).schemas


def test_the_guard_names_what_a_run_dropped(database: Database) -> None:
    """A schema that existed before the run and is gone after is reported too."""
    victim = scratch_name("victim")
    with database.connect() as conn:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(victim)))
    try:
        with (
            pytest.raises(LeftBehind, match=rf"schema {victim} \(dropped, it existed before\)"),
            nothing_left_behind(database),
            database.connect() as conn,
        ):
            conn.execute(sql.SQL("drop schema {}").format(sql.Identifier(victim)))
    finally:
        with database.connect() as conn:
            conn.execute(sql.SQL("drop schema if exists {}").format(sql.Identifier(victim)))


def _cli(scratch: Path, *args: str) -> subprocess.Popen[str]:
    """The `buildqueue` command in a process of its own, its embedded server under ``scratch``
    (so it owns that server: the session's own server is not touched)."""
    script = (
        "import sys; from pathlib import Path; import buildqueue.database as d\n"
        f"d.SCRATCH_DIR = Path({str(scratch)!r})\n"
        "from buildqueue.cli import main; raise SystemExit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _postmaster(scratch: Path, timeout: float = 120) -> int:
    """The pid of the server the CLI started under ``scratch``, once it is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, IndexError):
            lines = (scratch / "pgdata" / "postmaster.pid").read_text().splitlines()
            if len(lines) > 7 and lines[7].strip() == "ready":
                return int(lines[0])
        time.sleep(0.2)
    raise AssertionError(f"no embedded server came up under {scratch}")


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def cli_scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name
)
def test_no_embedded_server_outlives_the_cli_during_the_demo_build(
    cli_scratch: Path, signum: signal.Signals
) -> None:
    """Ctrl-C, SIGTERM or SIGKILL while `./run demo` builds: the server stops with the CLI,
    and Ctrl-C says `interrupted.` (exit 130), not a failed build."""
    process = _cli(cli_scratch, "demo", "--watch", "1")
    try:
        server = _postmaster(cli_scratch)
        time.sleep(3)  # dbt is parsing or building now
        assert process.poll() is None, process.communicate()
        process.send_signal(signum)
        _out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert _gone(server), f"the embedded server {server} still runs after {signum.name}"
    if signum == signal.SIGTERM:
        assert process.returncode == 143, err
    if signum == signal.SIGINT:
        assert process.returncode == 130, err
        assert err.strip().endswith("interrupted."), err
        assert "FAILED" not in err and "Traceback" not in err, err


def test_no_credential_is_left_on_disk_after_sigkill(tmp_path: Path) -> None:
    """dbt gets the password through its environment only: a build killed midway leaves
    no file holding it (the profile written for dbt names an env_var instead)."""
    password = "pw-" + secrets.token_hex(8)
    server = start_embedded(tmp_path / "pgdata", password=password, tcp_port=free_port())
    try:
        dsn = f"postgresql://postgres:{password}@{server.host}:{server.port}/postgres"
        env = {**os.environ, "BUILDQUEUE_SCHEMA": scratch_name("killed")}
        process = subprocess.Popen(
            [sys.executable, "-m", "buildqueue", "build", "--fixtures", "--database", dsn],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(8)  # dbt is running with its profile written
        process.kill()
        process.wait()
    finally:
        server.stop()
    folders = [PROJECT_DIR / ".buildqueue", PROJECT_DIR / "target", PROJECT_DIR / "logs"]
    folders += Path(tempfile.gettempdir()).glob("buildqueue-profile-*")  # dbt's profiles
    holding = [
        path
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and not path.is_relative_to(tmp_path) and _holds(path, password)
    ]
    assert holding == []


def _holds(path: Path, text: str) -> bool:
    try:
        return path.stat().st_size < 50_000_000 and text.encode() in path.read_bytes()
    except OSError:
        return False
