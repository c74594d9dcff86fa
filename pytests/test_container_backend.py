"""The PostgreSQL 15 container: its image setting, the local image, and cleanup.

The example and liveness tests run on the container too (the `example` fixture); these
tests cover what is particular to it: which image runs, that the container database is
PostgreSQL 15 reached on 127.0.0.1, and that no container outlives its run, even an
interrupted or killed one.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from buildqueue import container_image, docker_engine
from buildqueue.container_image import DEFAULT_IMAGE, IMAGE_ENV, configured_image, ensure_image
from buildqueue.database import (
    LOOPBACK,
    OWNER_LABEL,
    BackendUnavailable,
    Database,
    DatabaseError,
    remove_orphan_containers,
)
from buildqueue.paths import PROJECT_DIR


@pytest.fixture
def engine() -> Iterator[Any]:
    """A Docker engine that answers, or a skip with the reason."""
    try:
        client = docker_engine.client()
    except BackendUnavailable as error:
        pytest.skip(str(error))
    yield client
    client.close()


def test_the_image_setting_defaults_to_the_official_postgres_15(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(IMAGE_ENV, raising=False)
    assert configured_image() == (DEFAULT_IMAGE, False) == ("postgres:15", False)
    monkeypatch.setenv(IMAGE_ENV, " registry.example/postgres:15.8 ")
    assert configured_image() == ("registry.example/postgres:15.8", True)


@pytest.mark.parametrize(
    ("text", "deb822", "expected"),
    [
        (
            "deb http://ftp.de.debian.org/debian bookworm main\n"
            "deb [signed-by=/k.gpg arch=amd64] http://security.debian.org/debian-security "
            "bookworm-security main\n# deb http://commented.out/debian bookworm main\n",
            False,
            [
                ("http://ftp.de.debian.org/debian", ["bookworm"]),
                ("http://security.debian.org/debian-security", ["bookworm-security"]),
            ],
        ),
        (
            "Types: deb\nURIs: http://mirror.local/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main\n\nTypes: deb-src\nURIs: http://src.local/debian\n"
            "Suites: bookworm\n\nTypes: deb\nEnabled: no\nURIs: http://off.local/debian\n"
            "Suites: bookworm\n",
            True,
            [("http://mirror.local/debian", ["bookworm", "bookworm-updates"])],
        ),
    ],
)
def test_apt_sources_are_read_in_both_formats(
    text: str, deb822: bool, expected: list[tuple[str, list[str]]]
) -> None:
    assert list(container_image._apt_sources(text, deb822=deb822)) == expected


def test_the_container_database_is_postgresql_15_on_loopback(
    container_database: Database,
) -> None:
    db = container_database
    assert db.env()["PGHOST"] == db.host == LOOPBACK
    with db.connect() as conn:
        version = conn.execute("show server_version").fetchone()[0]
        who = conn.execute("select current_user, current_database()").fetchone()
        # we come in through the published TCP port, not over a unix socket
        assert conn.execute("select inet_client_addr() is not null").fetchone()[0]
    assert version.startswith("15"), version
    # the image honours POSTGRES_USER / POSTGRES_DB / POSTGRES_PASSWORD like the official one
    assert who == (db.user, db.dbname) == ("buildqueue", "buildqueue")
    with pytest.raises(DatabaseError, match="rejected the credentials"):
        db.connect(password="wrong")


def test_an_image_that_cannot_be_pulled_is_an_error_that_names_the_setting(
    engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(IMAGE_ENV, "buildqueue/no-such-image:0")
    with pytest.raises(DatabaseError) as raised:
        ensure_image(engine)
    assert not isinstance(raised.value, BackendUnavailable)
    assert f"Cannot pull the PostgreSQL image buildqueue/no-such-image:0 named by {IMAGE_ENV}" in (
        str(raised.value)
    )


def test_containers_of_a_dead_run_are_removed_at_the_next_start(engine: Any) -> None:
    image = ensure_image(engine)
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = engine.containers.create(image, labels={OWNER_LABEL: str(gone.pid)})
    try:
        assert orphan.id in remove_orphan_containers(engine)
        assert not engine.containers.list(all=True, filters={"id": orphan.id})
    finally:
        if engine.containers.list(all=True, filters={"id": orphan.id}):
            orphan.remove(force=True)


def test_an_interrupted_run_removes_its_container(engine: Any) -> None:
    script = (
        "import os\n"
        "from buildqueue.database import start_testcontainers\n"
        "start_testcontainers()\n"
        "print(os.getpid(), flush=True)\n"
        "raise KeyboardInterrupt\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "KeyboardInterrupt" in done.stderr, done.stderr
    pid = done.stdout.strip()
    assert pid.isdigit(), done.stderr
    assert not engine.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={pid}"})
