"""Render view_build_queue_status rows as a terminal table (progress, status, stale flag)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import DatabaseError

VIEW_COLUMNS = (
    "nixos_id",
    "system_name",
    "commit_timestamp",
    "git_commit_hash",
    "total_packages",
    "completed_packages",
    "building_packages",
    "pending_packages",
    "cached_packages",
    "active_workers",
    "worker_ids",
    "earliest_reservation",
    "latest_heartbeat",
    "status",
    "cache_status",
    "has_stale_workers",
)
"""The spec's 16 columns, in the view's order (pytests/test_one_home.py checks them against
the contract on view_build_queue_status)."""

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1"}


def view_query(schema: str) -> sql.Composed:
    """The dashboard's query: every row of the view dbt built in ``schema``."""
    return sql.SQL("select * from {}").format(sql.Identifier(schema, "view_build_queue_status"))


def fetch_rows(conn: psycopg.Connection, schema: str) -> list[dict[str, Any]]:
    """All rows of the view, in the view's order.

    A view that is not there, or that fails (e.g. paused for a Crystal Forge upgrade),
    raises `DatabaseError` with a message saying what to run.
    """
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(view_query(schema))
            return list(cur.fetchall())
    except psycopg.errors.UndefinedTable as error:
        raise DatabaseError(
            f"{schema}.view_build_queue_status does not exist in database "
            f"'{conn.info.dbname}' yet. Fix: build it first: ./run build (add --database "
            "and --target as for this command; on a live database: dbt build --target prod "
            "--vars '{source_schema: public}'), or ./run demo to build it over the example."
        ) from error
    except psycopg.Error as error:
        raise DatabaseError(
            f"{schema}.view_build_queue_status failed: {str(error).strip()}"
        ) from error


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or colour is None:
        return text
    return f"\033[{_COLOURS[colour]}m{text}\033[0m"


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """A fixed-width bar: '#' built, '.' not yet; an empty system counts as done."""
    share = 1.0 if total == 0 else done / total
    filled = round(share * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {share * 100:5.1f}%"


def row_colour(row: dict[str, Any]) -> str:
    """Dashboard colours: red stale, green ready, yellow building, none pending."""
    if row["has_stale_workers"]:
        return "red"
    return {"ready_for_system_build": "green", "building": "yellow"}.get(row["status"], "dim")


def _format_time(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def render(rows: Sequence[dict[str, Any]], *, colour: bool = False) -> str:
    """The table the demo prints: one line per system plus a totals line."""
    headers = [
        "system",
        "commit",
        "progress",
        "done",
        "bld",
        "pend",
        "cached",
        "workers",
        "status",
        "cache",
        "stale",
    ]
    body = []
    for row in rows:
        body.append(
            [
                str(row["system_name"]),
                _format_time(row["commit_timestamp"]),
                progress_bar(row["completed_packages"], row["total_packages"]),
                f"{row['completed_packages']}/{row['total_packages']}",
                str(row["building_packages"]),
                str(row["pending_packages"]),
                str(row["cached_packages"]),
                f"{row['active_workers']} " + (",".join(row["worker_ids"]) or "-"),
                str(row["status"]),
                row["cache_status"] or "-",
                "STALE" if row["has_stale_workers"] else "no",
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        _paint("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), "bold", colour)
    ]
    for row, cells in zip(rows, body, strict=True):
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        lines.append(_paint(line, row_colour(row), colour))
    workers = sum(r["active_workers"] for r in rows)
    remaining = sum(r["pending_packages"] + r["building_packages"] for r in rows)
    stale = sum(1 for r in rows if r["has_stale_workers"])
    lines.append(
        f"{len(rows)} systems in queue, {workers} active workers, "
        f"{remaining} packages left to build, {stale} with stale workers"
    )
    return "\n".join(lines)


def print_rows(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print `render(rows)` with colour when the stream is a terminal."""
    stream.write(render(rows, colour=use_colour(stream)) + "\n")
    stream.flush()
