"""The Python code is ruff-clean (lint and format), as part of the one test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from buildqueue.paths import PROJECT_DIR

RUFF = Path(sys.executable).with_name("ruff")


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), *args], cwd=PROJECT_DIR, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
