"""Every command's ``--help`` is a snapshot: restructuring the CLI must not change it.

Re-record after an intended change with ``python -m tests.cli.test_help`` and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_help.json"
COLUMNS = "100"


def command_names() -> list[str]:
    from typer.main import get_command

    from xrdpipe.cli import app

    return sorted(get_command(app).commands)  # type: ignore[attr-defined]


def help_text(command: str | None) -> str:
    from xrdpipe.cli import app

    args = ["--help"] if command is None else [command, "--help"]
    result = CliRunner().invoke(
        app, args, env={"COLUMNS": COLUMNS, "TERM": "dumb", "NO_COLOR": "1"}, prog_name="xrdpipe"
    )
    assert result.exit_code == 0, result.output
    return result.output


def record() -> dict[str, str]:
    return {"": help_text(None)} | {name: help_text(name) for name in command_names()}


def test_the_commands_are_the_recorded_ones() -> None:
    assert command_names() == sorted(k for k in _recorded() if k)


def _recorded() -> dict[str, str]:
    return json.loads(SNAPSHOT.read_text()) if SNAPSHOT.is_file() else {}


@pytest.mark.parametrize("command", sorted(_recorded()))
def test_help_is_unchanged(command: str) -> None:
    assert help_text(command or None) == _recorded()[command]


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
