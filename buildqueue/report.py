"""Render view_build_queue_status rows as a terminal table (progress, status, stale flag)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from buildqueue.database import ConnectionFailed, DatabaseError

VIEW_COLUMNS = (
    "nixos_id", "system_name", "commit_timestamp", "git_commit_hash", "total_packages",
    "completed_packages", "building_packages", "pending_packages", "cached_packages",
    "active_workers", "worker_ids", "earliest_reservation", "latest_heartbeat", "status",
    "cache_status", "has_stale_workers",
)  # fmt: skip
"""The spec's 16 columns, in the view's order (test_one_home.py checks them against the
contract on view_build_queue_status)."""

_COLOURS = {"green": "32", "yellow": "33", "red": "31", "dim": "2", "bold": "1"}


def view_query(schema: str) -> sql.Composed:
    """The dashboard's query: every row of the view dbt built in ``schema``."""
    return sql.SQL("select * from {}").format(sql.Identifier(schema, "view_build_queue_status"))


def fetch_rows(conn: psycopg.Connection, schema: str, target: str = "dev") -> list[dict[str, Any]]:
    """All rows of the view, in the view's order; a lost connection is `ConnectionFailed`,
    a missing or paused view a `DatabaseError` saying what to run."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(view_query(schema))
            return list(cur.fetchall())
    except psycopg.errors.UndefinedTable as error:
        raise DatabaseError(
            f"{schema}.view_build_queue_status does not exist in database "
            f"'{conn.info.dbname}' yet. Fix: build it first: ./run build --target {target} "
            "(on a live database: dbt build --target prod --vars '{source_schema: public}'), "
            "or ./run demo to build it over the example."
        ) from error
    except psycopg.OperationalError as error:
        raise ConnectionFailed(f"connection lost: {_first_line(error)}") from error
    except psycopg.Error as error:
        text = _first_line(error)
        if "is paused" in text:  # the deploy's own target and vars bring it back
            text = text.split(" Fix:")[0] + (
                f" Fix: once the upgrade is done, rebuild it as deployed: dbt build --target "
                f"{target} --vars '{{source_schema: ..., view_reader_roles: [...]}}'."
            )
        raise DatabaseError(f"{schema}.view_build_queue_status failed: {text}") from error


def _first_line(error: Exception) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _paint(text: str, colour: str, enabled: bool) -> str:
    return f"\033[{_COLOURS[colour]}m{text}\033[0m" if enabled else text


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """A fixed-width bar: '#' built, '.' not yet; an empty system counts as done."""
    share = 1.0 if total == 0 else done / total
    filled = round(share * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {share * 100:5.1f}%"


def row_colour(row: dict[str, Any]) -> str:
    """Dashboard colours: red stale, green ready, yellow building, dim pending."""
    colours = {"ready_for_system_build": "green", "building": "yellow"}
    return "red" if row["has_stale_workers"] else colours.get(row["status"], "dim")


def printable(value: object, limit: int = 40) -> str:
    """``value`` as text with control characters escaped (no terminal sequence from the
    data reaches the terminal), cut to ``limit`` characters."""
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cells(row: dict[str, Any]) -> list[str]:
    workers = ",".join(printable(w, 20) for w in row["worker_ids"][:3])
    workers += ",…" if len(row["worker_ids"]) > 3 else ""
    return [
        printable(row["system_name"]),
        f"{row['commit_timestamp']:%Y-%m-%d %H:%M:%S}" if row["commit_timestamp"] else "-",
        progress_bar(row["completed_packages"], row["total_packages"]),
        f"{row['completed_packages']}/{row['total_packages']}",
        str(row["building_packages"]),
        str(row["pending_packages"]),
        str(row["cached_packages"]),
        f"{row['active_workers']} {workers or '-'}",
        printable(row["status"]),
        printable(row["cache_status"] or "-"),
        "STALE" if row["has_stale_workers"] else "no",
    ]


HEADERS = ["system", "commit", "progress", "done", "bld", "pend", "cached", "workers"]
HEADERS += ["status", "cache", "stale"]


def render(rows: Sequence[dict[str, Any]], *, colour: bool = False, width: int = 0) -> str:
    """The table the demo prints: one line per system plus a totals line, every line cut
    to ``width`` (default: the terminal's; 160 columns when not on a terminal)."""
    width = width or shutil.get_terminal_size(fallback=(160, 24)).columns
    body = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(cells[i]) for cells in body)]) for i, h in enumerate(HEADERS)]

    def fit(text: str) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    def line(cells: list[str]) -> str:
        return fit("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())

    lines = [_paint(line(HEADERS), "bold", colour)]
    lines += [_paint(line(cells), row_colour(r), colour) for r, cells in zip(rows, body, strict=1)]
    workers = len({worker for row in rows for worker in row["worker_ids"]})
    remaining = sum(r["pending_packages"] + r["building_packages"] for r in rows)
    stale = sum(1 for r in rows if r["has_stale_workers"])
    return "\n".join(
        [
            *lines,
            fit(
                f"{len(rows)} systems in queue, {workers} active workers, "
                f"{remaining} packages left to build, {stale} with stale workers"
            ),
        ]
    )


def print_rows(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print `render(rows)` with colour when the stream is a terminal."""
    stream.write(render(rows, colour=use_colour(stream)) + "\n")
    stream.flush()
