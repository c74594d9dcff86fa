"""Every failure on the deploy path is one message with the fix.

The status-name cases live with their feature (test_status_names.py); here: a reader role
that does not exist, and the view read before it was built.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from buildqueue.database import Database
from buildqueue.dbt import DbtError, DbtOutcome, DbtProject
from support.cli_process import run_in_subprocess
from support.scratch import ScratchSchemas, scratch_name


def test_a_missing_reader_role_stops_the_build_with_the_create_role_line(
    database: Database, project: DbtProject, build: DbtOutcome, scratch_schema: ScratchSchemas
) -> None:
    role = scratch_name("missing_reader")  # never created
    schema = scratch_schema("no_reader")  # dbt creates it before it stops
    project = replace(project, schema=schema)
    with pytest.raises(DbtError) as raised:
        project.invoke("build", vars={"view_reader_roles": [role]})
    message = str(raised.value)
    assert f"Reader role(s) {role} (var view_reader_roles) do not exist" in message, message
    assert f"Fix: create them first, e.g. psql -c 'create role \"{role}\" login'" in message
    assert message.count("Fix:") == 1 and "Traceback" not in message
    with database.connect() as conn:  # stopped before the view was built
        view = conn.execute("select to_regclass(%s)", [f"{schema}.view_build_queue_status"])
        assert view.fetchone() == (None,)


def test_showing_a_view_that_is_not_built_says_how_to_build_it(
    database: Database, scratch_schema: ScratchSchemas
) -> None:
    schema = scratch_schema("not_built")
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
