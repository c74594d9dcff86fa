"""Run a step every N seconds until Ctrl-C, surviving the database going away.

`show --watch` and `sample --every` use it: a restart of the server or a terminated
connection prints one line and the step is retried with backoff (1 s doubling to 30 s)
instead of ending the command.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from buildqueue.database import ConnectionFailed

MAX_BACKOFF_SECONDS = 30.0


def every(seconds: float, step: Callable[[], None], what: str) -> None:
    """Call ``step`` on a fixed grid (start + k x ``seconds``, so runs do not drift; a run
    that overruns skips the slots it missed) until KeyboardInterrupt, which propagates."""
    start, backoff = time.monotonic(), 1.0
    while True:
        try:
            step()
        except ConnectionFailed as error:
            print(f"{what}: {error}; retrying in {backoff:g}s", file=sys.stderr, flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            continue
        backoff = 1.0
        slot = int((time.monotonic() - start) // seconds) + 1
        time.sleep(max(0.0, start + slot * seconds - time.monotonic()))
