"""`buildqueue` in a process of its own, as a shell runs it; a scram server to run it against."""

import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from buildqueue.database import LOOPBACK, Database, start_embedded
from buildqueue.paths import PROJECT_DIR

COMMAND = [sys.executable, "-m", "buildqueue"]


def cli_env(**extra: str) -> dict[str, str]:
    """This environment without PG* and BUILDQUEUE_* settings, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))} | extra


def run_in_subprocess(*args: str, env: dict | None = None, timeout: float = 300) -> Any:
    """`python -m buildqueue ARGS`: exit code, stdout and stderr as text."""
    return subprocess.run([*COMMAND, *args], cwd=PROJECT_DIR, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)  # fmt: skip


def start_cli(*args: str, env: dict | None = None, **popen: Any) -> subprocess.Popen:
    """`python -m buildqueue ARGS` running, stdout and stderr piped as text."""
    return subprocess.Popen([*COMMAND, *args], cwd=PROJECT_DIR, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # fmt: skip


def lines(stream: Any) -> queue.Queue:
    """A stream's lines in a queue (None at its end), read in a thread: a test can wait."""
    out: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=lambda: [*map(out.put, stream), out.put(None)], daemon=True).start()
    return out


def until(lines: queue.Queue, text: str, timeout: float = 60) -> list[str]:
    """Lines up to one containing ``text``; an error if the stream ends or stalls first."""
    seen: list[str] = []
    while not any(text in line for line in seen):
        seen.append(lines.get(timeout=timeout))
        assert seen[-1] is not None, f"no {text!r} in: {''.join(seen[:-1])}"
    return seen


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def start_password_server(folder: Path, password: str = "") -> Database:
    """An embedded server on 127.0.0.1 where every role must give its password."""
    return start_embedded(folder, password=password or secrets.token_hex(12), tcp_port=free_port())


def as_dsn(db: Database) -> str:
    """The URI a user would export: postgresql://user:password@host:port/db."""
    password = f":{quote(db.password, safe='')}" if db.password else ""
    return f"postgresql://{quote(db.user)}{password}@{db.host}:{db.port}/{quote(db.dbname)}"
