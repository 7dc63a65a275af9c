"""``xrdpipe train`` (one model, tracked) and ``xrdpipe run`` (the whole pipeline on a subset)."""

from __future__ import annotations

from typing import Annotated

import typer

from xrdpipe.cli import common
from xrdpipe.cli.common import CatalogOpt, CodUrlOpt, DataDirOpt, MirrorOpt, fail
from xrdpipe.cli.data import fetch, simulate
from xrdpipe.cli.evaluate import evaluate_command
from xrdpipe.config import load_catalog
from xrdpipe.errors import XrdpipeError


def train(
    task: Annotated[
        str,
        typer.Argument(
            help="phase-fractions, lattice-system, crystal-system, space-group or dimensionality."
        ),
    ] = "phase-fractions",
    subset: Annotated[str, typer.Option("--subset", help="A subset of catalog.yaml.")] = "demo",
    preset: Annotated[str, typer.Option("--preset", help="A training preset: cpu, paper.")] = "cpu",
    n_materials: Annotated[
        int, typer.Option("-n", "--n-materials", help="N materials (phase-fractions).")
    ] = 5,
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
) -> None:
    """Train a model of the papers on a subset's store; log and register it in MLflow."""
    from xrdpipe import tracking
    from xrdpipe.stages.train import preset_kind, train_task
    from xrdpipe.store import store_exists

    settings = common.settings(data_dir)
    try:
        cat = load_catalog(catalog, settings)
        config = cat.subset(subset)
        chosen = cat.preset(preset_kind(task), preset)
        store_path = settings.store_path(subset)
        if not store_exists(store_path):
            if not (settings.subset_dir(subset) / "manifest.parquet").is_file():
                fetch(subset, mirror=None, cod_url=None, catalog=catalog, data_dir=data_dir)
            simulate(subset, overwrite=False, catalog=catalog, data_dir=data_dir)
        tracking.configure(settings.tracking_uri())
        typer.echo(f"training {task} on {subset} with preset {preset} ({chosen})")
        result, tracked = train_task(
            task,
            subset,
            config,
            preset,
            chosen,
            store_path,
            n_materials=n_materials,
            max_phases=max_phases,
            seed=seed,
            protocol=protocol,
            device=device,
            progress=True,
        )
    except XrdpipeError as exc:
        fail(exc)
    lines = [f"  {k}: {v:.4g}" for k, v in result.metrics().items()]
    extra = ""
    if task == "phase-fractions":
        extra = f"\n  materials: {', '.join(result.materials)}\n  test set sha256: " + (
            result.test_set_sha256
        )
    typer.echo(
        f"{task} ({subset}, {preset}):\n"
        + "\n".join(lines)
        + extra
        + f"\n  MLflow run {tracked.run_id} ({settings.tracking_uri()})"
        + f"\n  registered model {tracked.registered_name} version {tracked.version}"
        + f" @{tracked.alias}"
    )


def run(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    mirror: MirrorOpt = None,
    cod_url: CodUrlOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    train_models: Annotated[
        bool, typer.Option("--train/--no-train", help="Train both models after simulating.")
    ] = True,
    preset: Annotated[str, typer.Option("--preset", help="Training preset.")] = "cpu",
    evaluate_grid: Annotated[
        bool,
        typer.Option("--evaluate/--no-evaluate", help="Finish with a small N/K grid and report."),
    ] = True,
) -> None:
    """Run the pipeline on a subset: fetch, simulate, train both models, evaluate (tracked)."""
    fetch(subset, mirror=mirror, cod_url=cod_url, catalog=catalog, data_dir=data_dir)
    simulate(subset, overwrite=False, catalog=catalog, data_dir=data_dir)
    settings = common.settings(data_dir)
    if train_models:
        strain_mode = load_catalog(catalog, settings).subset(subset).simulation.strain_mode
        for task in ("phase-fractions", "lattice-system"):
            if task == "lattice-system" and strain_mode != "symmetry":
                typer.echo(f"no lattice-system classifier: {subset} uses {strain_mode} strain")
                continue
            train(
                task,
                subset=subset,
                preset=preset,
                n_materials=5,
                max_phases=3,
                seed=0,
                protocol="strain",
                device=None,
                catalog=catalog,
                data_dir=data_dir,
            )
    if train_models and evaluate_grid:
        evaluate_command(
            subset,
            preset=preset,
            n_values="5",
            k_values="3",
            seeds="0",
            minutes_per_material=None,
            baselines="ridge,knn,nnls_reference",
            n_baseline_train=5000,
            cell_workers=1,
            device=None,
            classification_subset=None,
            catalog=catalog,
            data_dir=data_dir,
        )
    uri = settings.tracking_uri()
    typer.echo(
        f"done: stores and manifests under {settings.subset_dir(subset).resolve()}\n"
        f"  MLflow runs and models: {uri}\n"
        f"    browse them: `xrdpipe up` (MLflow UI on http://127.0.0.1:{settings.mlflow_port}) "
        f"or `mlflow ui --backend-store-uri {uri}`\n"
        f"  evaluation report: `xrdpipe report --open`"
    )
