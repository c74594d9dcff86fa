"""The testcontainers backend: PostgresContainer as is, with the image the setting names.

.ci/provision-postgres-image installs Docker and builds the PostgreSQL 15 image where no
registry is reachable; without a Docker engine these tests skip with the reason (the
example and liveness tests also run on the container, through the `example` fixture).
"""

from __future__ import annotations

import pytest

from buildqueue.database import (
    IMAGE_ENV,
    LOOPBACK,
    BackendUnavailable,
    Database,
    DatabaseError,
    start_testcontainers,
)


def test_without_a_docker_engine_the_backend_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(BackendUnavailable, match=r"no Docker engine answers.*Fix: start Docker"):
        start_testcontainers()


def test_the_container_database_is_postgresql_15_on_loopback(
    container_database: Database,
) -> None:
    db = container_database
    assert (db.backend, db.host, db.env()["PGHOST"]) == ("testcontainers", LOOPBACK, LOOPBACK)
    with db.connect() as conn:
        assert conn.execute("show server_version").fetchone()[0].startswith("15")
        assert conn.execute("select inet_client_addr() is not null").fetchone()[0]  # over TCP
    with pytest.raises(DatabaseError, match="rejected the credentials"):
        db.connect(password="wrong")


def test_an_image_docker_lacks_is_an_error_naming_the_setting(
    container_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once Docker answers, a container that cannot start fails (it does not skip)."""
    monkeypatch.setenv(IMAGE_ENV, "buildqueue/no-such-image:0")
    with pytest.raises(DatabaseError) as raised:
        start_testcontainers()
    assert not isinstance(raised.value, BackendUnavailable)
    assert f"Fix: name a PostgreSQL image Docker has in {IMAGE_ENV}" in str(raised.value)
