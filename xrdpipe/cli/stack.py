"""``xrdpipe up``, ``down`` and ``status``: the local stack (see :mod:`xrdpipe.stack`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xrdpipe.cli import common
from xrdpipe.cli.common import StackDataDirOpt, fail
from xrdpipe.errors import XrdpipeError
from xrdpipe.stack import StackPaths, down, instructions, status, up


def up_command(
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Also deploy every deployment of prefect.yaml.")
    ] = False,
    project_dir: Annotated[
        Path | None, typer.Option("--project-dir", help="Folder with deploy/prefect.yaml.")
    ] = None,
    data_dir: StackDataDirOpt = None,
) -> None:
    """Start the local stack: Prefect server, a worker of pool xrdpipe, MLflow server."""
    settings = common.settings(data_dir)
    typer.echo(f"starting the stack under {StackPaths.for_settings(settings).root} ...")
    try:
        info = up(settings, project_dir=project_dir, deploy=deploy)
    except XrdpipeError as exc:
        fail(exc)
    for record in info.services.values():
        typer.echo(f"  {record.name}: pid {record.pid}, log {record.log}")
    if deploy:
        typer.echo("deployed every deployment of deploy/prefect.yaml")
    typer.echo(instructions(info))


def down_command(data_dir: StackDataDirOpt = None) -> None:
    """Stop every process of the local stack (SIGTERM, then SIGKILL)."""
    try:
        stopped = down(common.settings(data_dir))
    except XrdpipeError as exc:
        fail(exc)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status_command(data_dir: StackDataDirOpt = None) -> None:
    """Show which services of the local stack run: pids, health and UI URLs."""
    states = status(common.settings(data_dir))
    for s in states:
        if not s.running or s.record is None:
            typer.echo(f"{s.name:15s} stopped")
            continue
        health = "healthy" if s.healthy else "NOT answering"
        where = f"  {s.record.url}" if s.record.url else ""
        typer.echo(f"{s.name:15s} running (pid {s.record.pid}), {health}{where}")
    if not any(s.running for s in states):
        raise typer.Exit(code=1)
