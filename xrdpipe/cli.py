"""The ``xrdpipe`` command line: each stage on one subset, with a progress bar and a summary.

The CLI calls the same library functions as the Prefect flows, without a Prefect server.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from xrdpipe.config import Settings, load_catalog, resolve_subset
from xrdpipe.errors import XrdpipeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

MirrorOpt = Annotated[
    Path | None, typer.Option("--mirror", help="Read this local COD mirror directory instead.")
]
CodUrlOpt = Annotated[str | None, typer.Option("--cod-url", help="Query this COD base URL.")]
CatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="Another catalog.yaml.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where stores go (else XRDPIPE_DATA_DIR).")
]


@app.callback()
def _main() -> None:
    """xrdpipe: COD to trained, tracked powder-XRD models."""


def _settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.command()
def fetch(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    mirror: MirrorOpt = None,
    cod_url: CodUrlOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fetch a COD subset: download CIFs, parse, filter, and write its structure manifest."""
    from xrdpipe.stages.fetch import (
        acquire_cifs,
        build_subset_manifest,
        find_candidates,
        make_report,
    )

    settings = _settings(data_dir)
    try:
        config = resolve_subset(
            load_catalog(catalog, settings), subset, settings, mirror_dir=mirror, cod_url=cod_url
        )
        start = time.perf_counter()
        folder = settings.subset_dir(subset)
        candidates = find_candidates(config, settings)
        typer.echo(f"{candidates.total} entries from {candidates.source}")
        with tqdm(total=len(candidates.cod_ids), desc="CIFs", unit="cif", file=sys.stderr) as bar:
            downloads = acquire_cifs(
                config, settings, candidates.cod_ids, folder / "cif", lambda _: bar.update()
            )
        ok = [d for d in downloads if d.status != "failed"]
        with tqdm(total=len(ok), desc="structures", unit="cif", file=sys.stderr) as bar:
            kept, quarantine = build_subset_manifest(
                subset,
                config,
                candidates.source,
                downloads,
                folder,
                candidates.rejected,
                progress=lambda *_: bar.update(),
            )
        report = make_report(subset, candidates, downloads, kept, quarantine, folder, start)
    except XrdpipeError as exc:
        _fail(exc)
    typer.echo(report.summary())


@app.command()
def simulate(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store made with another configuration.")
    ] = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Simulate a fetched subset's strained peak lists into its Zarr store (on Dask)."""
    from xrdpipe.parallel import dask_client
    from xrdpipe.stages.simulate import run_simulation

    settings = _settings(data_dir)
    try:
        config = load_catalog(catalog, settings).subset(subset)
        folder = settings.subset_dir(subset)
        if not (folder / "manifest.parquet").is_file():
            raise XrdpipeError(
                f"no manifest at {folder / 'manifest.parquet'}: run `xrdpipe fetch {subset}` first"
            )
        bar = tqdm(desc="blocks", unit="block", file=sys.stderr)

        def progress(block, done: int, total: int) -> None:
            bar.total = total
            bar.update()

        with dask_client(settings) as client:
            report = run_simulation(
                folder,
                settings.store_path(subset),
                config,
                client=client,
                progress=progress,
                overwrite=overwrite,
            )
        bar.close()
        from xrdpipe.patterns.datasets import render_store_profiles

        bar = tqdm(desc="profiles", unit="block", file=sys.stderr)

        def profile_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update()

        key = render_store_profiles(settings.store_path(subset), config.profile, profile_progress)
        bar.close()
    except XrdpipeError as exc:
        _fail(exc)
    typer.echo(f"single-phase profiles: {folder / 'patterns.zarr'}/{key}")
    typer.echo(
        f"store {report.store_path}: {report.n_materials} materials, peak axis {report.n_peaks}\n"
        f"  blocks computed {report.blocks_submitted}, already complete {report.blocks_skipped}\n"
        f"  simulated {report.simulated}, quarantined {len(report.quarantined)}"
        + "".join(f"\n    {cod_id}: {why}" for cod_id, why in report.quarantined.items())
        + f"\n  wall time {report.wall_s:.1f} s"
    )


@app.command("plot-mixtures")
def plot_mixtures_command(
    subset: Annotated[str, typer.Argument(help="A simulated subset of catalog.yaml.")] = "demo",
    n_materials: Annotated[int, typer.Option("-n", help="N: materials in the pool.")] = 5,
    max_phases: Annotated[int, typer.Option("-k", help="K: most phases per mixture.")] = 3,
    examples: Annotated[int, typer.Option(help="Mixtures to draw.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Plot a few rendered mixtures beside their single phases and stick patterns."""
    from xrdpipe.patterns.config import MixtureConfig
    from xrdpipe.patterns.datasets import load_peaks
    from xrdpipe.patterns.plots import draw_examples, plot_mixtures

    settings = _settings(data_dir)
    try:
        config = load_catalog(catalog, settings).subset(subset)
        store_path = settings.store_path(subset)
        peaks = load_peaks(store_path, "train")
        if peaks.peaks.n_materials < n_materials:
            raise XrdpipeError(
                f"-n {n_materials} exceeds the {peaks.peaks.n_materials} materials of {subset}"
            )
        cfg = MixtureConfig(n_materials=n_materials, max_phases=max_phases)
        figure = plot_mixtures(
            draw_examples(peaks, cfg, config.profile, examples, seed), config.profile
        )
    except XrdpipeError as exc:
        _fail(exc)
    out = (
        out or settings.subset_dir(subset) / "plots" / f"mixtures_N{n_materials}_K{max_phases}.png"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    typer.echo(f"wrote {out}")


@app.command()
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
    from xrdpipe.store import store_exists
    from xrdpipe.training.tasks import preset_kind

    settings = _settings(data_dir)
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
        result, tracked = tracking.train_task(
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
        _fail(exc)
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


@app.command()
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
    settings = _settings(data_dir)
    if train_models:
        train(
            "phase-fractions",
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
        strain_mode = load_catalog(catalog, settings).subset(subset).simulation.strain_mode
        if strain_mode == "symmetry":
            train(
                "lattice-system",
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
        else:
            typer.echo(f"no lattice-system classifier: {subset} uses {strain_mode} strain")
    if train_models and evaluate_grid:
        from xrdpipe.cli_evaluate import evaluate_command

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


from xrdpipe.stack import register_cli as _register_stack_cli  # noqa: E402

_register_stack_cli(app)  # xrdpipe up / down / status

from xrdpipe.cli_evaluate import register_cli as _register_evaluate_cli  # noqa: E402

_register_evaluate_cli(app)  # xrdpipe evaluate / report

from xrdpipe.stages.predict import predict_command  # noqa: E402

app.command("predict")(predict_command)  # xrdpipe predict FILE...


def main() -> None:  # pragma: no cover - console entry point
    """Entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
