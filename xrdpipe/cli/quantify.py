"""``xrdpipe quantify SCANS... --phases DIR``: measured scans to a weight-% table with error bars.

The work is done by :mod:`xrdpipe.stages.quantify`; this is its command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xrdpipe.cli.common import CatalogOpt, DataDirOpt, fail, settings
from xrdpipe.errors import XrdpipeError


def quantify_command(
    scans: Annotated[
        list[Path],
        typer.Argument(help="Measured scans: .xy .csv .txt .dat .xye .xrdml .brml .raw .ras .rasx"),
    ],
    phases: Annotated[
        Path, typer.Option("--phases", help="A folder of CIF files, one per candidate phase.")
    ],
    instrument: Annotated[
        Path | None,
        typer.Option("--instrument", help="A scan whose lines, range, slit, radius are used."),
    ] = None,
    refine: Annotated[
        bool,
        typer.Option("--refine/--no-refine", help="Polish the CNN's answer by refinement."),
    ] = False,
    internal_standard: Annotated[
        str | None,
        typer.Option("--internal-standard", help="A phase (file stem) weighed into each sample."),
    ] = None,
    standard_wt: Annotated[
        float | None,
        typer.Option("--standard-wt", help="Its weight percent of the whole sample."),
    ] = None,
    members: Annotated[
        int | None, typer.Option("--members", help="Ensemble members (default 3).", min=1)
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", help="Phase-fraction preset (phase-set-gpu on a GPU).")
    ] = "phase-set",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output folder (default <data>/<phase set>/quantify/<time>)."),
    ] = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Weight % of each phase in measured scans, with sigma, flags, plots and a summary."""
    from xrdpipe.stages.quantify import quantify

    try:
        result = quantify(
            scans,
            phases,
            settings(data_dir),
            instrument=instrument,
            preset=preset,
            members=members,
            refine=refine,
            internal_standard=internal_standard,
            standard_wt=standard_wt,
            out_dir=out,
            catalog=catalog,
            log=typer.echo,
        )
    except XrdpipeError as exc:
        fail(exc)
    unit = result.scans[0].unit if result.scans else ""
    typer.echo(f"{'scan':<28} {'phase':<24} {'wt%':>7} {'sigma':>6} {'refined':>8} present")
    for row in result.rows:
        refined = row["refined_wt_percent"]
        typer.echo(
            f"{Path(row['scan']).name[:28]:<28} {row['phase'][:24]:<24} "
            f"{_number(row['wt_percent'])} {_number(row['sigma'], 6)} "
            f"{_number(refined, 8)} {'yes' if row['present'] else 'no'}"
            + (f"  [{'; '.join(row['flags'])}]" if row["flags"] else "")
        )
    typer.echo(f"({unit}); model {result.model[0]} v{result.model[1]}; see {result.out_dir}")
    if result.failed:
        typer.secho(f"{len(result.failed)} scan(s) failed:", fg="red", err=True)
        for path, message in result.failed.items():
            typer.secho(f"  {path}: {message}", fg="red", err=True)
        raise typer.Exit(code=1)


def _number(value: float | None, width: int = 7) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.2f}"
