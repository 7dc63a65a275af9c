"""``xrdpipe fetch``, ``simulate`` and ``plot-mixtures``: a subset's data, stage by stage."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from xrdpipe.cli import common
from xrdpipe.cli.common import CatalogOpt, CodUrlOpt, DataDirOpt, MirrorOpt, fail
from xrdpipe.config import load_catalog, resolve_subset
from xrdpipe.errors import XrdpipeError


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

    settings = common.settings(data_dir)
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
        fail(exc)
    typer.echo(report.summary())


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

    settings = common.settings(data_dir)
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
        fail(exc)
    typer.echo(f"single-phase profiles: {folder / 'patterns.zarr'}/{key}")
    typer.echo(
        f"store {report.store_path}: {report.n_materials} materials, peak axis {report.n_peaks}\n"
        f"  blocks computed {report.blocks_submitted}, already complete {report.blocks_skipped}\n"
        f"  simulated {report.simulated}, quarantined {len(report.quarantined)}"
        + "".join(f"\n    {cod_id}: {why}" for cod_id, why in report.quarantined.items())
        + f"\n  wall time {report.wall_s:.1f} s"
    )


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

    settings = common.settings(data_dir)
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
        fail(exc)
    out = (
        out or settings.subset_dir(subset) / "plots" / f"mixtures_N{n_materials}_K{max_phases}.png"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    typer.echo(f"wrote {out}")
