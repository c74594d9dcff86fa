"""`buildqueue show --watch N`: a live console view that Ctrl-C stops cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtProject
from buildqueue.paths import PROJECT_DIR
from support.scratch import VIEW_SCHEMA

HEADER = "view_build_queue_status at "
TOTALS = "3 systems in queue, 5 active workers, 8 packages left to build, 1 with stale workers"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch(database: Database, *extra: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """`buildqueue show`; with ``sigint_ignored``, started the way a shell starts a
    background job (SIGINT ignored, which the child inherits)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BUILDQUEUE_"))}
    env["BUILDQUEUE_SCHEMA"] = VIEW_SCHEMA  # where the session built the example's view
    return subprocess.Popen(
        [sys.executable, "-m", "buildqueue", "show", "--database", database.conninfo(), *extra],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )


def _lines(stream: object) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], headers: int, timeout: float) -> list[str]:
    """Lines of output until ``headers`` refreshes are complete (their totals printed)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while sum(line.startswith(TOTALS) for line in seen) < headers:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            break
        seen.append(line)
    return seen


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "sigint-ignored"])
def test_watch_refreshes_and_ctrl_c_exits_cleanly(
    database: Database, fresh_example: DbtProject, sigint_ignored: bool
) -> None:
    process = _watch(database, "--target", "ci", "--watch", "0.5", sigint_ignored=sigint_ignored)
    try:
        lines = _lines(process.stdout)
        seen = _read_until(lines, headers=2, timeout=60)
        assert sum(line.startswith(HEADER) for line in seen) >= 2, "".join(seen)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = []
    while (line := lines.get(timeout=5)) is not None:
        rest.append(line)
    stderr = process.stderr.read() if process.stderr else ""
    output = "".join(seen + rest)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert output.rstrip().endswith("stopped."), output[-500:]
    assert "every 0.5s, Ctrl-C to stop" in output
    for system in ("server-a", "server-b", "server-c"):
        assert system in output
    assert "STALE" in output  # server-c's row


def test_watch_rejects_a_non_positive_interval(
    database: Database, fresh_example: DbtProject
) -> None:
    process = _watch(database, "--target", "ci", "--watch", "-1")
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "--watch needs a positive number of seconds" in err
    assert "Traceback" not in err
