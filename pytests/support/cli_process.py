"""Run the `buildqueue` command (`./run`) as a user's shell does, for tests of what users see."""

from __future__ import annotations

import subprocess
import sys

from buildqueue.paths import PROJECT_DIR


def run_in_subprocess(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m buildqueue ARGS` in a process of its own, as a user's shell runs it.

    For tests of what a user sees: exit code, stdout and stderr (captured, as text).
    """
    return subprocess.run(
        [sys.executable, "-m", "buildqueue", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
