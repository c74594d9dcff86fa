"""Every failure on the deploy path is one message with the fix.

The status-name and wrong-schema cases live with their features (test_status_names.py,
test_source_indexes.py); here: a reader role that does not exist, and the view read before
it was built.
"""

from __future__ import annotations

import os
import uuid

import pytest

from buildqueue.cli import run_in_subprocess
from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject


def test_a_missing_reader_role_stops_the_build_with_the_create_role_line(
    database: Database, build: DbtOutcome
) -> None:
    role = f"bq_missing_reader_{uuid.uuid4().hex[:8]}"
    schema = f"bq_no_reader_{uuid.uuid4().hex[:8]}"
    project = DbtProject(database, target="ci", schema=schema)
    with pytest.raises(DbtError) as raised:
        project.invoke("build", vars={"view_reader_roles": [role]})
    message = str(raised.value)
    assert f"Reader role(s) {role} (var view_reader_roles) do not exist" in message, message
    assert f"Fix: create them first, e.g. psql -c 'create role {role} login'" in message
    assert message.count("Fix:") == 1 and "Traceback" not in message
    with database.connect() as conn:  # stopped before the view was built
        view = conn.execute("select to_regclass(%s)", [f"{schema}.view_build_queue_status"])
        assert view.fetchone() == (None,)
        conn.execute(f"drop schema if exists {schema} cascade")  # dbt creates it first


def test_showing_a_view_that_is_not_built_says_how_to_build_it(database: Database) -> None:
    schema = f"bq_not_built_{uuid.uuid4().hex[:8]}"
    completed = run_in_subprocess(
        "show",
        "--database",
        database.conninfo(),
        "--target",
        "ci",
        env={**os.environ, "BUILDQUEUE_SCHEMA": schema},
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr, completed.stderr
    assert f"error: {schema}.view_build_queue_status does not exist in database" in completed.stderr
    assert "Fix: build it first: ./run build" in completed.stderr
