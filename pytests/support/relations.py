"""dbt-core's test helpers in this project's shape: run_dbt, check_relations_equal."""

from __future__ import annotations

from typing import Any

import psycopg

from buildqueue.dbt import DbtOutcome, DbtProject
from buildqueue.report import VIEW_COLUMNS
from support.example import EXPECTED_ROWS

EXPECTED = "expected_view_build_queue_status"
TIMES = ("earliest_reservation", "latest_heartbeat")  # seeded as <time>_age_seconds


def run_dbt(project: DbtProject, *args: str, expect_pass: bool = True,
            vars: dict[str, Any] | None = None) -> DbtOutcome:  # fmt: skip
    """One dbt command; fails the test unless it succeeds (or, expect_pass=False, fails)."""
    outcome = project.invoke(*args, vars=vars, check=False)
    assert outcome.success == expect_pass, outcome.describe()
    return outcome


def check_relations_equal(conn: psycopg.Connection, view: str, expected: str) -> None:
    """The view's rows are the seed's (`except all` both ways), times as ages at a past instant."""
    plain = [c for c in VIEW_COLUMNS if c not in (*TIMES, "git_commit_hash")]
    age = "round(extract(epoch from loaded.at - v.{0}))::integer as {0}_age_seconds"
    actual = f"""select {", ".join([*("v." + c for c in plain), *map(age.format, TIMES)])}
        from {view} as v, (select max(v.latest_heartbeat + make_interval(secs =>
            e.latest_heartbeat_age_seconds)) as at from {view} as v join {expected} as e
            using (nixos_id)) as loaded where loaded.at <= now()"""
    expect = f"select {', '.join(plain + [c + '_age_seconds' for c in TIMES])} from {expected}"
    diff = f"(select 'missing', * from ({expect} except all {actual}) as m) union all"
    diff += f" (select 'unexpected', * from ({actual} except all {expect}) as u)"
    assert (rows := conn.execute(diff).fetchall()) == [], rows
    order = [nixos_id for (nixos_id,) in conn.execute(f"select nixos_id from {view}")]
    assert order == [row["nixos_id"] for row in EXPECTED_ROWS]  # the seed's row order
