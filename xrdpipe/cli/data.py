"""``xrdpipe fetch``, ``simulate`` and ``plot-mixtures``: a subset's data, stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xrdpipe.cli import common
from xrdpipe.cli.common import CatalogOpt, CodUrlOpt, DataDirOpt, MirrorOpt, fail
from xrdpipe.config import load_catalog
from xrdpipe.errors import XrdpipeError


def fetch(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    mirror: MirrorOpt = None,
    cod_url: CodUrlOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fetch a COD subset: download CIFs, parse, filter, and write its structure manifest."""
    common.run_step(
        data_dir, "fetch", subset=subset, mirror_dir=mirror, cod_url=cod_url, catalog=catalog
    )


def simulate(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store made with another configuration.")
    ] = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Simulate a fetched subset's strained peak lists into its Zarr store (on Dask)."""
    common.run_step(data_dir, "simulate", subset=subset, overwrite=overwrite, catalog=catalog)


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
