"""``xrdpipe evaluate`` (paper 002's N/K grid with baselines) and ``xrdpipe report``."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from xrdpipe.cli import common
from xrdpipe.cli.common import (
    EvaluateCatalogOpt,
    EvaluateDataDirOpt,
    InstrumentOpt,
    PhasesOpt,
    fail,
)
from xrdpipe.errors import XrdpipeError


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{name} must be comma-separated integers, got {text!r}") from exc
    return values


def evaluate_command(
    subset: Annotated[str, typer.Argument(help="The phase-fraction subset.")] = "hoefer2024",
    preset: Annotated[
        str | None, typer.Option("--preset", help="Phase-fraction preset (grid-cpu; phase-set).")
    ] = None,
    n_values: Annotated[
        str | None, typer.Option("--n", help="N values (5,10,15,20; all phases).")
    ] = None,
    k_values: Annotated[
        str | None, typer.Option("--k", help="K values (3,5,7; 3 or N with --phases).")
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Training seeds, e.g. 0,1,2.")] = "0",
    minutes_per_material: Annotated[
        float | None, typer.Option("--minutes-per-material", help="Training cap per material.")
    ] = None,
    baselines: Annotated[
        str | None, typer.Option("--baselines", help="Comma-separated baselines (default all).")
    ] = None,
    n_baseline_train: Annotated[
        int, typer.Option("--baseline-train", help="Training mixtures of the regressors.")
    ] = 20_000,
    cell_workers: Annotated[int, typer.Option("--cell-workers", help="Cells at a time.")] = 1,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda.")] = None,
    classification_subset: Annotated[
        str | None,
        typer.Option("--classification", help="Also run paper 000's tables on this subset."),
    ] = None,
    catalog: EvaluateCatalogOpt = None,
    data_dir: EvaluateDataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Run paper 002's N/K grid (CNN and baselines) and write the report, all in MLflow."""
    from xrdpipe.stages.evaluate import describe_evaluation, evaluate_subset, grid_spec

    on = common.target(subset, catalog, data_dir, phases, instrument)
    subset, catalog, preset = on.subset, on.catalog, on.preset(preset, "grid-cpu")
    if on.phase_set is None:
        n_values, k_values = n_values or "5,10,15,20", k_values or "3,5,7"
    elif n_values is None or k_values is None:
        n_all = on.n_materials(None, data_dir)
        n_values, k_values = n_values or str(n_all), k_values or str(min(3, n_all))
    n, k, s = _ints(n_values, "--n"), _ints(k_values, "--k"), _ints(seeds, "--seeds")
    try:
        spec = grid_spec(
            n,
            k,
            s,
            baselines.split(",") if baselines else None,
            n_baseline_train,
            minutes_per_material,
        )
        outcome = evaluate_subset(
            common.settings(data_dir),
            subset,
            preset,
            spec,
            cell_workers=cell_workers,
            device=device,
            classification_subset=classification_subset,
            catalog=catalog,
            log=typer.echo,
        )
    except XrdpipeError as exc:
        fail(exc)
    typer.echo(describe_evaluation(outcome))


def classifiers_command(
    subset: Annotated[str, typer.Argument(help="A subset with symmetry strain.")] = "acnn",
    preset: Annotated[
        str, typer.Option("--preset", help="The a-CNN's preset: cv (45 s a fold) or a catalog one.")
    ] = "cv",
    target: Annotated[
        str,
        typer.Option(
            "--target", help="lattice_system, crystal_system, space_group or dimensionality."
        ),
    ] = "lattice_system",
    synthetic_manifest: Annotated[
        Path | None,
        typer.Option(
            "--synthetic-manifest",
            help="A synthetic store's manifest.parquet: add the synthetic-to-real column.",
        ),
    ] = None,
    synthetic_patterns: Annotated[
        int,
        typer.Option(
            "--synthetic-patterns", help="Synthetic training patterns (4 renders a structure)."
        ),
    ] = 20_000,
    synthetic_protocols: Annotated[
        str,
        typer.Option(
            "--synthetic-protocols",
            help="synthetic-to-real and/or synthetic+material (comma-separated).",
        ),
    ] = "synthetic-to-real",
    catalog: EvaluateCatalogOpt = None,
    data_dir: EvaluateDataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Paper 000's tables: the a-CNN and eight classical classifiers, 5-fold CV, both protocols.

    With --synthetic-manifest, a third column: the same methods trained on measured-like
    renders of synthetic crystals and tested on renders of the subset's real structures.
    """
    from xrdpipe.stages.evaluate import run_classification_report

    settings = common.settings(data_dir)
    on = common.target(subset, catalog, data_dir, phases, instrument)
    subset, catalog = on.subset, on.catalog
    try:
        run_id, report, _ = run_classification_report(
            settings,
            subset,
            preset,
            catalog,
            target=target,
            synthetic_manifest=synthetic_manifest,
            synthetic_patterns=synthetic_patterns,
            synthetic_protocols=tuple(p.strip() for p in synthetic_protocols.split(",")),
            log=typer.echo,
        )
    except XrdpipeError as exc:
        fail(exc)
    typer.echo(f"MLflow run {run_id}; report: {report}")


def report_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder to write report.html into.")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
    data_dir: EvaluateDataDirOpt = None,
) -> None:
    """Write (and optionally open) the newest evaluation report from MLflow."""
    from xrdpipe import tracking

    settings = common.settings(data_dir)
    tracking.configure(settings.tracking_uri())
    try:
        path = tracking.download_latest_report(output or settings.data_dir / "reports" / "latest")
    except XrdpipeError as exc:
        fail(exc)
    typer.echo(f"report: {path.resolve()}")
    if open_browser:
        webbrowser.open(path.resolve().as_uri())
