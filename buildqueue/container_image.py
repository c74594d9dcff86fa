"""The PostgreSQL image the testcontainers backend runs, and a registry-free way to build one.

One setting names the image: $BUILDQUEUE_POSTGRES_IMAGE, default ``postgres:15`` (the
official image, pulled from Docker Hub like any testcontainers user would). Where that
image cannot be pulled (no registry reachable, as on this project's machines) and this is
a Debian machine where we are root, `ensure_image` builds an equivalent PostgreSQL 15
image once, from Debian packages only:

1. ``debootstrap --variant=minbase --include=postgresql-15 bookworm`` from the Debian
   mirror apt already uses here (about 40 s);
2. an entrypoint honouring POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB like the
   official image's (initdb on first start, listen on all addresses inside the container,
   password authentication);
3. ``docker import`` as ``buildqueue/postgres:15-local`` (about 15 s).

Later runs find the image and reuse it; a changed recipe (this file's entrypoint or
import settings) makes a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buildqueue.database import BackendUnavailable, DatabaseError
from buildqueue.paths import SCRATCH_DIR

IMAGE_ENV = "BUILDQUEUE_POSTGRES_IMAGE"
DEFAULT_IMAGE = "postgres:15"
LOCAL_IMAGE = "buildqueue/postgres:15-local"
RECIPE_LABEL = "buildqueue.image-recipe"
SUITE = "bookworm"
"""Debian release whose PostgreSQL is 15."""
FALLBACK_MIRROR = "http://deb.debian.org/debian"
BUILD_LOG = SCRATCH_DIR / "postgres-image.log"
PG_BIN = "/usr/lib/postgresql/15/bin"
PGDATA = "/var/lib/postgresql/data"
ENTRYPOINT_PATH = "/usr/local/bin/buildqueue-postgres-entrypoint"

ENTRYPOINT = """#!/bin/sh
# Entrypoint of buildqueue's locally built PostgreSQL 15 image (buildqueue/container_image.py).
# Same variables as the official postgres image: POSTGRES_PASSWORD (required), POSTGRES_USER
# (default postgres), POSTGRES_DB (default: the user). The first start runs initdb; the
# server listens on every address inside the container, with password authentication.
set -eu
: "${POSTGRES_PASSWORD:?is required (as for the official postgres image)}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 \\
        --locale=C.UTF-8 --no-sync --auth-local=trust --auth-host=scram-sha-256
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        quoted=$(printf '%s' "$db" | sed 's/"/""/g')
        echo "create database \\"$quoted\\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
"""

IMPORT_CHANGES = [
    f'ENTRYPOINT ["{ENTRYPOINT_PATH}"]',
    "USER postgres",
    f"ENV PATH={PG_BIN}:/usr/local/bin:/usr/bin:/bin",
    f"ENV PGDATA={PGDATA}",
    "ENV LANG=C.UTF-8",
    "EXPOSE 5432",
]

# Left out of the image: package caches, docs, translations, and the cluster the package
# created at install time (the entrypoint makes its own).
TRIMMED = [
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "etc/postgresql/15/main",
    "var/lib/postgresql/15",
]


def recipe_digest() -> str:
    """A short hash of everything that shapes the local image; a new recipe means a rebuild."""
    text = "\n".join([SUITE, ENTRYPOINT, *IMPORT_CHANGES, *TRIMMED])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def configured_image() -> tuple[str, bool]:
    """The image to run and whether the user chose it ($BUILDQUEUE_POSTGRES_IMAGE)."""
    chosen = os.environ.get(IMAGE_ENV, "").strip()
    return (chosen or DEFAULT_IMAGE), bool(chosen)


def ensure_image(client: Any) -> str:
    """The name of a PostgreSQL image present in the Docker engine of ``client``.

    Order: the configured image if present; for the default setting, the local build if
    present and current; a pull of the configured image; for the default setting (or when
    the local name is configured), a local build. `BackendUnavailable` when none can be
    had on this machine, `DatabaseError` when a pull or build that should work fails.
    """
    image, chosen = configured_image()
    if _present(client, image) and (image != LOCAL_IMAGE or _current(client)):
        return image
    if not chosen and _current(client):
        return LOCAL_IMAGE
    pull_error = ""
    if image != LOCAL_IMAGE:
        pull_error = _pull(client, image)
        if not pull_error:
            return image
        if chosen:
            raise DatabaseError(
                f"Cannot pull the PostgreSQL image {image} named by {IMAGE_ENV} "
                f"({pull_error}). Fix: pull or build it first, or unset {IMAGE_ENV} to use "
                f"{DEFAULT_IMAGE} (or {LOCAL_IMAGE}, built here when no registry is reachable)."
            )
    reason = why_no_local_build()
    if reason:
        why = f"{image} cannot be pulled ({pull_error}); " if pull_error else ""
        raise BackendUnavailable(
            f"no PostgreSQL image: {why}{LOCAL_IMAGE} cannot be built here: {reason}"
        )
    build_local_image(client)
    return LOCAL_IMAGE


def why_no_local_build() -> str:
    """Why `build_local_image` cannot run here, or "" when it can."""
    if os.geteuid() != 0:
        return "it needs root (debootstrap)"
    os_id = _os_release().get("ID", "")
    if os_id != "debian":
        return f"it needs a Debian machine (this is {os_id or 'unknown'})"
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (apt-get install debootstrap; ./run test does it)"
    return ""


def build_local_image(client: Any, tag: str = LOCAL_IMAGE) -> None:
    """Build the PostgreSQL 15 image from Debian packages (see the module docstring).

    Holds a machine-wide lock, so concurrent test runs build it once; the debootstrap
    output goes to .buildqueue/postgres-image.log.
    """
    import docker

    with _machine_lock():
        if _current(client, tag):
            return
        mirror = debian_mirror()
        _say(
            f"building the PostgreSQL 15 image {tag} (once per machine; about a minute on "
            "an idle 2-core machine, up to 4 under load): "
            f"debootstrap of Debian {SUITE} with postgresql-15 from {mirror}, then docker "
            f"import; log: {_shown(BUILD_LOG)}"
        )
        started = time.monotonic()
        previous = _image_id(client, tag)
        BUILD_LOG.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="postgres-image-", dir=SCRATCH_DIR) as scratch:
            root = Path(scratch) / "root"
            try:
                _debootstrap(root, mirror)
                _finish_root(root)
                _import(client, root, tag)
            finally:
                _unmount_below(root)
        if previous:  # an image of an older recipe: now untagged, drop it
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(previous)
        _say(f"built {tag} in {time.monotonic() - started:.0f} s")


def debian_mirror() -> str:
    """The Debian archive apt uses on this machine (its source for this release's suite)."""
    codename = _os_release().get("VERSION_CODENAME", "")
    apt = Path("/etc/apt")
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for uri, suites in _apt_sources(text, deb822=path.suffix == ".sources"):
            if codename in suites and "security" not in uri:
                return uri.rstrip("/")
    return FALLBACK_MIRROR


def _apt_sources(text: str, *, deb822: bool) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of each `deb` source in a sources.list or deb822 .sources text."""
    return _deb822_sources(text) if deb822 else _one_line_sources(text)


def _one_line_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(uri, [suite]) of each ``deb [options] uri suite components`` line of a sources.list."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = _without_options(words[1:])
        if len(words) >= 2:
            yield words[0], [words[1]]


def _without_options(words: list[str]) -> list[str]:
    """A one-line source's words after ``deb``, without its ``[signed-by=... arch=...]``."""
    if words and words[0].startswith("["):
        while words and not words[0].endswith("]"):
            words = words[1:]
        words = words[1:]
    return words


def _deb822_sources(text: str) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) of each URI of each enabled ``Types: deb`` stanza of a .sources file."""
    for stanza in text.split("\n\n"):
        fields = _deb822_fields(stanza)
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
            for uri in fields.get("uris", "").split():
                yield uri, fields.get("suites", "").split()


def _deb822_fields(stanza: str) -> dict[str, str]:
    """A deb822 stanza's fields, keys lowercased (continuation and comment lines skipped)."""
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "#")):
            fields[key.strip().lower()] = value.strip()
    return fields


def _debootstrap(root: Path, mirror: str) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=postgresql-15",
        SUITE,
        str(root),
        mirror,
    ]
    with BUILD_LOG.open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = BUILD_LOG.read_text(errors="replace").splitlines()[-5:]
        raise DatabaseError(
            f"debootstrap of the PostgreSQL 15 image failed (exit {done.returncode}): "
            + " | ".join(tail)
            + f". Fix: check that apt can reach {mirror} (apt-get update); "
            f"full log: {_shown(BUILD_LOG)}."
        )


def _finish_root(root: Path) -> None:
    """Trim the tree, add the entrypoint and the folders the postgres user writes to."""
    _unmount_below(root)
    for relative in TRIMMED:
        shutil.rmtree(root / relative, ignore_errors=True)
    entrypoint = root / ENTRYPOINT_PATH.lstrip("/")
    entrypoint.parent.mkdir(parents=True, exist_ok=True)
    entrypoint.write_text(ENTRYPOINT)
    entrypoint.chmod(0o755)
    uid, gid = _postgres_ids(root)
    for folder, mode in ((PGDATA, 0o700), ("/run/postgresql", 0o2775)):
        path = root / folder.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        path.chmod(mode)


def _import(client: Any, root: Path, tag: str) -> None:
    """`tar | docker import`, streamed, with the entrypoint and environment as changes."""
    import docker

    repository, _, version = tag.rpartition(":")
    changes = [*IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={recipe_digest()}"]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    saved_timeout = client.api.timeout
    client.api.timeout = None  # the engine answers only once the whole layer is written
    try:
        client.api.import_image(
            src=tar.stdout, repository=repository, tag=version, changes=changes, stream_src=True
        )
    except docker.errors.DockerException as error:
        detail = getattr(error, "explanation", None) or error
        raise DatabaseError(
            f"docker import of {tag} failed: {detail}. Fix: check the Docker engine "
            "(docker info) and free disk space under /var/lib/docker."
        ) from error
    finally:
        client.api.timeout = saved_timeout
        tar.stdout.close()
        tar.wait()


def _present(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _image_id(client: Any, tag: str) -> str:
    import docker

    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        return ""


def _current(client: Any, tag: str = LOCAL_IMAGE) -> bool:
    """The local image exists and was built by this recipe."""
    import docker

    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return False
    return labels.get(RECIPE_LABEL) == recipe_digest()


def _pull(client: Any, image: str) -> str:
    """Pull ``image``; "" on success, else the engine's reason in one line."""
    import docker

    try:
        client.images.pull(image)  # no tag in the name: "latest"
    except docker.errors.DockerException as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ""


def _postgres_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "postgres":
            return int(fields[2]), int(fields[3])
    raise DatabaseError(
        "The debootstrapped tree has no postgres user (postgresql-15 did not install). "
        f"Fix: read {_shown(BUILD_LOG)}."
    )


def _unmount_below(root: Path) -> None:
    """Unmount anything debootstrap left mounted in the tree (/proc, /sys) before removal."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


@contextmanager
def _machine_lock() -> Iterator[None]:
    """One image build at a time on this machine (the engine's images are machine-wide)."""
    path = Path(tempfile.gettempdir()) / "buildqueue-postgres-image.lock"
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key: value.strip().strip('"') for key, sep, value in pairs if sep}


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
