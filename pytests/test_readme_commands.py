"""The README and the CLI name the same commands: a command the README tells a user to
run exists, and every command the CLI has is in the README."""

from __future__ import annotations

import argparse
import re

from buildqueue.cli import _parser
from buildqueue.paths import PROJECT_DIR

DOCS = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]


def _cli_commands() -> set[str]:
    subparsers = next(
        action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction)
    )
    return set(subparsers.choices)


def _mentioned(path: str) -> set[str]:
    return set(re.findall(r"\./run ([a-z][a-z-]*)", path))


def test_every_command_the_docs_name_exists() -> None:
    commands = _cli_commands()
    for doc in DOCS:
        unknown = _mentioned(doc.read_text()) - commands
        assert not unknown, f"{doc.name} names ./run {sorted(unknown)}, which the CLI lacks"


def test_every_cli_command_is_in_the_readme() -> None:
    missing = _cli_commands() - _mentioned((PROJECT_DIR / "README.md").read_text())
    assert not missing, f"README.md never shows ./run {sorted(missing)}"


def test_the_cli_docstring_lists_every_command() -> None:
    from buildqueue import cli

    listed = set(re.findall(r"^\s+buildqueue ([a-z][a-z-]*)", cli.__doc__ or "", re.M))
    assert listed == _cli_commands()


def test_every_cli_command_has_a_handler() -> None:
    from buildqueue import cli

    # `test` is the one command handled before argparse (its arguments go to pytest)
    assert {*cli.COMMANDS, "test"} == _cli_commands()
