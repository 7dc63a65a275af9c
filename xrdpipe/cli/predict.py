"""``xrdpipe predict FILE...``: measured patterns through registered models.

The work is done by :mod:`xrdpipe.stages.predict`; this is its command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from xrdpipe.cli.common import fail
from xrdpipe.errors import XrdpipeError
from xrdpipe.stages.predict import (
    DEFAULT_ALIAS,
    FilePrediction,
    format_prediction,
    load_model_ensemble,
    predict_files,
)


def predict_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Measured patterns: .xy .csv .txt .dat .xye .xrdml .brml .raw .ras .rasx"
        ),
    ],
    classifier: Annotated[
        str | None,
        typer.Option("--classifier", help="Registered a-CNN, e.g. xrdpipe-lattice-system-acnn."),
    ] = None,
    phase_model: Annotated[
        str | None, typer.Option("--phase-model", help="Registered phase-fraction model.")
    ] = None,
    alias: Annotated[
        str, typer.Option("--alias", help="Alias to load (champion falls back to candidate).")
    ] = DEFAULT_ALIAS,
    version: Annotated[
        int | None, typer.Option("--version", help="This version of every named model instead.")
    ] = None,
    wavelength: Annotated[
        float | None,
        typer.Option("--wavelength", help="Angstrom, for two-column files (default: the model's)."),
    ] = None,
    background: Annotated[
        bool | None,
        typer.Option(
            "--background/--no-background",
            help="Subtract a rolling-minimum background for every model (default: for the "
            "a-CNN only, trained without background).",
            show_default=False,
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial/--no-partial", help="Accept patterns covering >= 50 % of the range."
        ),
    ] = False,
    ensemble: Annotated[
        bool,
        typer.Option("--ensemble/--no-ensemble", help="Add same-task versions of other seeds."),
    ] = True,
    indexing: Annotated[
        bool,
        typer.Option(
            "--indexing/--no-indexing",
            help="Join a lattice-, crystal-system or space-group classifier"
            " with the scan's indexing.",
        ),
    ] = True,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for plots and predictions.json.")
    ] = Path("predictions"),
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI (else XRDPIPE_ settings).")
    ] = None,
) -> None:
    """Predict measured patterns with registered models: classes, phase fractions, plots."""
    from tqdm import tqdm

    from xrdpipe import tracking
    from xrdpipe.config import Settings

    if classifier is None and phase_model is None:
        typer.secho("error: name a model: --classifier and/or --phase-model", fg="red", err=True)
        raise typer.Exit(code=2)
    try:
        tracking.configure(tracking_uri or Settings().tracking_uri())
        models = [
            load_model_ensemble(name, alias, version, ensemble=ensemble)
            for name in (classifier, phase_model)
            if name is not None
        ]
    except XrdpipeError as exc:
        fail(exc)
    for model in models:
        for note in model.notes:
            typer.secho(f"notice: {note}", fg="yellow", err=True)
    bar = tqdm(
        total=len(files), desc="patterns", unit="file", file=sys.stderr, disable=len(files) < 2
    )

    def show(item: Any) -> None:
        bar.update()
        if isinstance(item, FilePrediction):
            tqdm.write(format_prediction(item))
        else:
            tqdm.write(f"{item[0]}: FAILED: {item[1]}")

    _, failures = predict_files(
        files,
        models,
        wavelength=wavelength,
        background=background,
        allow_partial=partial,
        out_dir=out,
        on_result=show,
        indexing=indexing,
    )
    bar.close()
    typer.echo(f"{len(files) - len(failures)} of {len(files)} file(s) predicted; see {out}")
    if failures:
        typer.secho(f"{len(failures)} file(s) failed:", fg="red", err=True)
        for path, message in failures.items():
            typer.secho(f"  {path}: {message}", fg="red", err=True)
        raise typer.Exit(code=1)
