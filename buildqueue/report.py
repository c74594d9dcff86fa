"""Read view_build_queue_status and render it as a terminal table."""

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
"""The view's columns in order (test_one_home.py checks them against the contract)."""
HEADERS = ["system", "commit", "progress", "done", "bld", "pend", "cached", "workers", "status",
           "cache", "stale"]  # fmt: skip


def view_query(schema: str) -> sql.Composed:
    """The dashboard's query: every row of the view dbt built in ``schema``."""
    return sql.SQL("select * from {}").format(sql.Identifier(schema, "view_build_queue_status"))


def fetch_rows(conn: psycopg.Connection, schema: str, target: str = "dev") -> list[dict[str, Any]]:
    """All rows of the view; a missing or paused view is an error saying what to run."""
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return list(cur.execute(view_query(schema)).fetchall())
    except psycopg.errors.UndefinedTable as error:
        raise DatabaseError(
            f"{schema}.view_build_queue_status does not exist in database "
            f"'{conn.info.dbname}' yet. Fix: build it first: ./run build --target {target} "
            "(on a live database: dbt build --target prod --vars '{source_schema: public}'), "
            "or ./run demo to build it over the example."
        ) from error
    except psycopg.Error as error:
        text = (str(error).strip() or type(error).__name__).splitlines()[0]
        if isinstance(error, psycopg.OperationalError):
            raise ConnectionFailed(f"connection lost: {text}") from error
        if "is paused" in text:  # the deploy's own target and vars bring it back
            text = text.split(" Fix:")[0] + (
                f" Fix: once the upgrade is done, rebuild it as deployed: dbt build --target "
                f"{target} --vars '{{source_schema: ..., view_reader_roles: [...]}}'."
            )
        raise DatabaseError(f"{schema}.view_build_queue_status failed: {text}") from error


def printable(value: object, limit: int = 40) -> str:
    """``value`` with control characters escaped, cut to ``limit`` characters."""
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(value)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cells(row: dict[str, Any]) -> list[str]:
    workers = ",".join(printable(w, 20) for w in row["worker_ids"][:3])
    workers += ",…" if len(row["worker_ids"]) > 3 else ""
    done, total = row["completed_packages"], row["total_packages"]
    commit, share = row["commit_timestamp"], 1.0 if total == 0 else done / total  # empty: done
    bar = "[" + "#" * round(share * 20) + "." * (20 - round(share * 20)) + f"] {share:6.1%}"
    return [
        printable(row["system_name"]), f"{commit:%Y-%m-%d %H:%M:%S}" if commit else "-",
        bar, f"{done}/{total}", str(row["building_packages"]),
        str(row["pending_packages"]), str(row["cached_packages"]),
        f"{row['active_workers']} {workers or '-'}", printable(row["status"]),
        printable(row["cache_status"] or "-"), "STALE" if row["has_stale_workers"] else "no",
    ]  # fmt: skip


def render(rows: Sequence[dict[str, Any]], *, colour: bool = False, width: int = 0) -> str:
    """A line per system and a totals line (distinct workers), each cut to ``width``."""
    width = width or shutil.get_terminal_size(fallback=(160, 24)).columns
    body = [_cells(row) for row in rows]
    widths = [max([len(h), *(len(cells[i]) for cells in body)]) for i, h in enumerate(HEADERS)]

    def fit(text: str, code: str = "") -> str:
        text = text if len(text) <= width else text[: width - 1] + "…"
        return f"\033[{code}m{text}\033[0m" if colour and code else text

    def line(cells: list[str], code: str) -> str:
        return fit("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip(), code)

    codes = {"ready_for_system_build": "32", "building": "33"}  # green, yellow, else dim
    lines = [line(HEADERS, "1")] + [
        line(cells, "31" if row["has_stale_workers"] else codes.get(row["status"], "2"))
        for row, cells in zip(rows, body, strict=True)
    ]
    workers = len({worker for row in rows for worker in row["worker_ids"]})
    remaining = sum(r["pending_packages"] + r["building_packages"] for r in rows)
    stale = sum(1 for r in rows if r["has_stale_workers"])
    totals = f"{len(rows)} systems in queue, {workers} active workers, "
    return "\n".join(
        [*lines, fit(totals + f"{remaining} packages left to build, {stale} with stale workers")]
    )


def print_rows(rows: Sequence[dict[str, Any]], stream: TextIO = sys.stdout) -> None:
    """Print `render(rows)`, coloured on a terminal unless NO_COLOR or TERM=dumb."""
    colour = stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    stream.write(render(rows, colour=colour) + "\n")
    stream.flush()
