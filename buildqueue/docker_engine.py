"""Reach a Docker engine, and, for `./run test` as root on Debian, install and start one.

`client()` is the one way the harness talks to Docker (the docker SDK that testcontainers
uses): it returns a client whose engine answered, or raises `BackendUnavailable` saying
why and how to fix it, so tests that need Docker skip with that reason.

`prepare_for_tests()` runs before the test suite (`buildqueue test`). Where no engine
answers and we are root with apt, it installs Debian's ``docker.io`` and ``debootstrap``
(quietly, like the Chromium install in ./run), starts ``dockerd`` in the background with
its log in .buildqueue/dockerd.log, waits until the engine answers, and makes sure the
PostgreSQL image is there (`buildqueue.container_image`). The daemon is left running for
the next run (and for other checkouts on the machine, which share it); stop it with
``kill $(cat /var/run/docker.pid)``. Anywhere else it installs nothing and the container
tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any

from buildqueue.database import BackendUnavailable, DatabaseError
from buildqueue.paths import SCRATCH_DIR

DOCKERD_LOG = SCRATCH_DIR / "dockerd.log"
ENGINE_START_TIMEOUT_SECONDS = 60
PACKAGES = {"docker.io": "dockerd", "debootstrap": "debootstrap"}
"""Debian package -> the command it provides (installed when the command is missing)."""


def client(timeout: int = 10) -> Any:
    """A docker SDK client whose engine answers; `BackendUnavailable` with the reason if not."""
    try:
        import docker  # installed with testcontainers (the test extra)
    except ImportError as error:
        raise BackendUnavailable(
            f"the docker SDK is not installed ({error}). Fix: pip install -e '.[test]'."
        ) from error
    try:
        engine = docker.from_env(timeout=timeout)
        engine.ping()
    except docker.errors.DockerException as error:
        raise BackendUnavailable(
            f"no Docker engine answers ({_first_line(error)}). Fix: start Docker, or run "
            "./run test as root on Debian, which installs docker.io and starts dockerd."
        ) from error
    return engine


def prepare_for_tests() -> None:
    """Make the container tests runnable here if we can; say what was done and how long."""
    try:
        engine = client()
    except BackendUnavailable as unavailable:
        reason = _why_cannot_install()
        if not reason:
            _install(_missing(PACKAGES))
            reason = "" if shutil.which("dockerd") else "docker.io could not be installed"
        if reason:
            _say(f"container tests will skip: {unavailable} ({reason})")
            return
        try:
            engine = start_dockerd()
        except DatabaseError as error:
            _say(f"container tests will skip: {error}")
            return
    from buildqueue.container_image import ensure_image

    for attempt in (1, 2):
        try:
            image = ensure_image(engine)
            version = engine.version().get("Version", "?")
            _say(f"container tests: Docker {version}, PostgreSQL image {image}")
            return
        except BackendUnavailable as unavailable:
            if attempt == 1 and not shutil.which("debootstrap") and not _why_cannot_install():
                _install(["debootstrap"])  # the engine runs; the image build needs debootstrap
                continue
            _say(f"container tests will skip: {unavailable}")
            return
        except DatabaseError as error:
            _say(f"container tests will fail: {error}")
            return


def start_dockerd() -> Any:
    """Start dockerd in the background (log: .buildqueue/dockerd.log); its answering client."""
    DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with DOCKERD_LOG.open("a") as log:
        daemon = subprocess.Popen(
            ["dockerd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this run; Ctrl-C of the tests does not stop it
        )
    while time.monotonic() - started < ENGINE_START_TIMEOUT_SECONDS:
        if daemon.poll() is not None:
            break
        try:
            engine = client(timeout=2)
        except BackendUnavailable:
            time.sleep(0.25)
            continue
        _say(
            f"started dockerd (pid {daemon.pid}, log {DOCKERD_LOG}) in "
            f"{time.monotonic() - started:.1f} s; it keeps running for later runs"
        )
        return engine
    tail = DOCKERD_LOG.read_text(errors="replace").splitlines()[-5:]
    state = f"exited with {daemon.returncode}" if daemon.poll() is not None else "did not answer"
    raise DatabaseError(
        f"dockerd {state} within {ENGINE_START_TIMEOUT_SECONDS} s: "
        + " | ".join(tail)
        + f". Fix: read {DOCKERD_LOG}, or start Docker yourself."
    )


def _why_cannot_install() -> str:
    """Why Docker cannot be installed and started here, or "" when it can."""
    if os.geteuid() != 0:
        return "not root: ./run test installs and starts Docker only as root"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "no apt-get to install docker.io with"
    return ""


def _missing(packages: dict[str, str]) -> list[str]:
    """The packages whose command is not on PATH."""
    return [package for package, command in packages.items() if not shutil.which(command)]


def _install(packages: list[str]) -> None:
    """apt-get install ``packages`` quietly; says how long it took, or why it failed."""
    if not packages:
        return
    if not shutil.which("apt-get"):
        _say(f"cannot install {' and '.join(packages)}: no apt-get on this machine")
        return
    _say(f"installing {' and '.join(packages)} for the PostgreSQL 15 container tests...")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            _say(f"could not install {' '.join(packages)} ({' '.join(command)}: {tail})")
            return
    _say(f"installed {' and '.join(packages)} in {time.monotonic() - started:.0f} s")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    """`python -m buildqueue.docker_engine`: prepare as `./run test` does, then time one
    PostgreSQL container's start and removal (the numbers in docs/testing.md)."""
    from buildqueue.database import start_testcontainers

    started = time.monotonic()
    prepare_for_tests()
    print(f"docker + image ready: {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    db = start_testcontainers()
    print(
        f"container start (to a PostgreSQL answering on 127.0.0.1): "
        f"{time.monotonic() - started:.1f} s"
    )
    with db.connect() as conn:
        print("server_version:", conn.execute("show server_version").fetchone()[0])
    started = time.monotonic()
    db.stop()
    print(f"container removal: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
