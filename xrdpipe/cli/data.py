"""``xrdpipe fetch``, ``simulate`` and ``plot-mixtures``: a subset's data, stage by stage."""

from __future__ import annotations

from pathlib import Path
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


def fetch(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    mirror: MirrorOpt = None,
    cod_url: CodUrlOpt = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Fetch a COD subset: download CIFs, parse, filter, and write its structure manifest."""
    on = common.target(subset, catalog, data_dir, phases, instrument)
    common.run_step(
        data_dir, "fetch", subset=on.subset, mirror_dir=mirror, cod_url=cod_url, catalog=on.catalog
    )


def simulate(
    subset: Annotated[str, typer.Argument(help="A subset of catalog.yaml.")] = "demo",
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store made with another configuration.")
    ] = False,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Simulate a fetched subset's strained peak lists into its Zarr store (on Dask)."""
    on = common.target(subset, catalog, data_dir, phases, instrument)
    common.run_step(data_dir, "simulate", subset=on.subset, overwrite=overwrite, catalog=on.catalog)


def plot_mixtures_command(
    subset: Annotated[str, typer.Argument(help="A simulated subset of catalog.yaml.")] = "demo",
    n_materials: Annotated[
        int | None, typer.Option("-n", help="N: materials in the pool (default 5; all phases).")
    ] = None,
    max_phases: Annotated[int, typer.Option("-k", help="K: most phases per mixture.")] = 3,
    examples: Annotated[int, typer.Option(help="Mixtures to draw.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    out: Annotated[Path | None, typer.Option(help="PNG to write.")] = None,
    catalog: CatalogOpt = None,
    data_dir: DataDirOpt = None,
    phases: PhasesOpt = None,
    instrument: InstrumentOpt = None,
) -> None:
    """Plot a few rendered mixtures beside their single phases and stick patterns."""
    from xrdpipe.patterns.config import MixtureConfig
    from xrdpipe.patterns.datasets import load_peaks
    from xrdpipe.patterns.plots import draw_examples, plot_mixtures

    settings = common.settings(data_dir)
    on = common.target(subset, catalog, data_dir, phases, instrument)
    subset = on.subset
    try:
        n_materials = on.n_materials(n_materials, data_dir)
        cat = load_catalog(on.catalog, settings)
        config = cat.subset(subset)
        # a phase set draws as its preset trains: weight fractions of distinct phases
        mixtures = (
            {}
            if on.phase_set is None
            else cat.preset("phase_fractions", on.phase_set.preset).mixtures.config_fields()
        )
        store_path = settings.store_path(subset)
        peaks = load_peaks(store_path, "train", orientation=config.profile.needs_orientation)
        if peaks.peaks.n_materials < n_materials:
            raise XrdpipeError(
                f"-n {n_materials} exceeds the {peaks.peaks.n_materials} materials of {subset}"
            )
        if on.phase_set is not None:
            max_phases = min(max_phases, n_materials)
        cfg = MixtureConfig(n_materials=n_materials, max_phases=max_phases, **mixtures)
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
