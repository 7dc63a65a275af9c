"""``xrdpipe train`` (one model, tracked) and ``xrdpipe run`` (the whole pipeline on a subset)."""

from __future__ import annotations

from typing import Annotated

import typer

from xrdpipe.cli import common
from xrdpipe.cli.common import (
    CatalogOpt,
    CodUrlOpt,
    DataDirOpt,
    InstrumentOpt,
    MirrorOpt,
    PhasesOpt,
    fail,
)
from xrdpipe.config import load_catalog
from xrdpipe.errors import XrdpipeError
from xrdpipe.stages.pipeline import DEFAULTS


def train(
    task: Annotated[
        str,
        typer.Argument(
            help="phase-fractions, lattice-system, crystal-system, space-group or dimensionality."
        ),
    ] = "phase-fractions",
    subset: Annotated[str, typer.Option("--subset", help="A subset of catalog.yaml.")] = "demo",
    preset: Annotated[
        str | None,
        typer.Option("--preset", help="A training preset: cpu (default), paper; phase-set."),
    ] = None,
    n_materials: Annotated[
        int | None,
        typer.Option(
            "-n", "--n-materials", help="N materials (phase-fractions; 5, or all phases)."
        ),
    ] = None,
    max_phases: Annotated[
        int, typer.Option("-k", "--max-phases", help="K most phases per mixture.")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Training seed.")] = 0,
    protocol: Annotated[
        str, typer.Option("--protocol", help="Classifier split: strain or material.")
    ] = "strain",
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu, cuda (else the preset's).")
    ] = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Train a model of the papers on a subset's store; log and register it in MLflow."""
    from xrdpipe.stages.train import preset_kind
    from xrdpipe.store import store_exists

    settings = common.settings(data_dir)
    on = common.target(subset, catalog, data_dir, phases, instrument)
    subset, catalog = on.subset, on.catalog
    preset = on.preset(preset, "cpu") if task == "phase-fractions" else (preset or "cpu")
    try:
        load_catalog(catalog, settings).preset(preset_kind(task), preset)  # fail before work
    except XrdpipeError as exc:
        fail(exc)
    if not store_exists(settings.store_path(subset)):
        if not (settings.subset_dir(subset) / "manifest.parquet").is_file():
            common.run_step(data_dir, "fetch", subset=subset, catalog=catalog)
        common.run_step(data_dir, "simulate", subset=subset, catalog=catalog)
    n_materials = on.n_materials(n_materials, data_dir)
    if on.phase_set is not None:
        max_phases = min(max_phases, n_materials)
    common.run_step(
        data_dir,
        "train",
        task=task,
        subset=subset,
        preset=preset,
        catalog=catalog,
        seed=seed,
        n_materials=n_materials,
        max_phases=max_phases,
        protocol=protocol,
        device=device,
    )


def run(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = DEFAULTS.subset,
    mirror: MirrorOpt = None,
    cod_url: CodUrlOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    train_models: Annotated[
        bool, typer.Option("--train/--no-train", help="Train both models after simulating.")
    ] = True,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Training preset (cpu; phase-set).")
    ] = None,
    evaluate_grid: Annotated[
        bool,
        typer.Option("--evaluate/--no-evaluate", help="Finish with a small N/K grid and report."),
    ] = DEFAULTS.evaluate_grid,
    force: Annotated[
        bool,
        typer.Option("--force", help="Redo every stage, even those that are up to date."),
    ] = False,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Run the pipeline on a subset: fetch, simulate, train both models, evaluate (tracked)."""
    from xrdpipe.stages.phase_set import phase_set_pipeline
    from xrdpipe.stages.pipeline import PipelineOptions, local_steps, run_pipeline

    settings = common.settings(data_dir)
    if instrument is not None and phases is None:
        fail(XrdpipeError("--instrument needs --phases (a folder of CIF files)"))
    options = PipelineOptions(
        subset=subset,
        preset=preset or DEFAULTS.preset,
        tasks=DEFAULTS.tasks if train_models else (),
        evaluate_grid=train_models and evaluate_grid,
        mirror_dir=None if mirror is None else str(mirror),
        cod_url=cod_url,
        catalog=None if catalog is None else str(catalog),
    )
    with common.Bars() as bars:
        try:
            if phases is not None:
                options = phase_set_pipeline(options, settings, phases, instrument, preset=preset)
            run_pipeline(
                options.forced() if force else options,
                settings,
                local_steps(settings, typer.echo, bars),
                log=typer.echo,
            )
        except XrdpipeError as exc:
            fail(exc)
    uri = settings.tracking_uri()
    typer.echo(
        f"done: stores and manifests under {settings.subset_dir(options.subset).resolve()}\n"
        f"  MLflow runs and models: {uri}\n"
        f"    browse them: `xrdpipe up` (MLflow UI on http://127.0.0.1:{settings.mlflow_port}) "
        f"or `mlflow ui --backend-store-uri {uri}`\n"
        f"  evaluation report: `xrdpipe report --open`"
    )
