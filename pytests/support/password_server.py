"""A user's own password-protected server, as a default PostgreSQL install has it.

`start_password_server` runs the embedded binaries with scram-sha-256 for every role on
127.0.0.1; `as_dsn` is the URI a user exports for it (``BUILDQUEUE_DATABASE``). The
session fixture uses both under ``./run test --password-server`` (conftest.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

from buildqueue.database import Database, free_port, start_embedded


def start_password_server(folder: Path) -> Database:
    """An embedded server on 127.0.0.1 where every role must give its password (scram)."""
    return start_embedded(folder, password=secrets.token_hex(12), tcp_port=free_port())


def as_dsn(db: Database) -> str:
    """The URI a user would export for ``db``: postgresql://user:password@host:port/db."""
    password = f":{quote(db.password, safe='')}" if db.password else ""
    return f"postgresql://{quote(db.user)}{password}@{db.host}:{db.port}/{quote(db.dbname)}"
