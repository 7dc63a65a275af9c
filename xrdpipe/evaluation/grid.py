"""Paper 002's N/K grid: the phase-fraction CNN and the classical baselines, cell by cell.

A cell is (N materials, K most phases, training seed). Its N materials are the first N of
:func:`~xrdpipe.training.phase_fractions.grid_material_order` with the subset's seed (a
seeded shuffle of the completed materials): the materials of N=5 are the first five of N=10
and so on, so TVD against N compares nested sets, and every seed of a cell sees the same materials.

Each cell trains the CNN with :func:`~xrdpipe.training.phase_fractions.train_phase_fractions` and
scores it on its fixed test mixtures (held-out strain conditions, recorded by spec and
hash); the baselines (:mod:`xrdpipe.evaluation.baselines`) fit on training mixtures drawn
from the same 60 % training strains and are scored on exactly the same test mixtures.

Training budget: the preset's epochs of paper 002's size (0.6 x 500 x N mixtures) make the
work of a cell proportional to N, as in the paper; ``minutes_per_material`` adds a wall-clock
cap of that many minutes per material (the ``cpu`` grid's way of fitting in two hours).

Pure: no Prefect, no MLflow. :mod:`flows.evaluate` runs the cells and logs them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdpipe.config import PhaseFractionPreset, SubsetConfig
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.baselines import (
    BASELINES,
    BaselineResult,
    dictionary_profiles,
    run_fraction_baselines,
    training_mixtures,
)
from xrdpipe.store import layout as store

CNN = "cnn"
"""The method name of the phase-fraction CNN in grid tables."""

BASELINE_SEED_OFFSET = 2_000_003
"""Seed offset of the baselines' training mixtures (distinct from the CNN's streams)."""

PAPER_002_TVD = {(5, 3): 0.06}
"""Paper 002's headline: mean test TVD about 0.06 for N=5, K=3 (its figure 3 shows TVD
rising with N and K)."""


@dataclass(frozen=True)
class GridSpec:
    """What a grid evaluates.

    Attributes:
        n_values: numbers of materials N (paper 002: 5, 10, 15, 20).
        k_values: most phases per mixture K (paper 002: 3, 5, 7).
        seeds: training seeds per cell (paper 002: three).
        minutes_per_material: wall-clock cap of a cell's training per material (``None``:
            the preset's own ``max_minutes``).
        baselines: baseline names (subset of :data:`~xrdpipe.evaluation.baselines.BASELINES`).
        n_baseline_train: training mixtures of the regression baselines (issue: 20,000).
        max_dictionary_strains: strain conditions per material in ``nnls_strained``.
    """

    n_values: tuple[int, ...] = (5, 10, 15, 20)
    k_values: tuple[int, ...] = (3, 5, 7)
    seeds: tuple[int, ...] = (0, 1, 2)
    minutes_per_material: float | None = None
    baselines: tuple[str, ...] = BASELINES
    n_baseline_train: int = 20_000
    max_dictionary_strains: int = 50

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"baselines {unknown} are not among the allowed {list(BASELINES)}")
        for name, values in (("n_values", self.n_values), ("k_values", self.k_values)):
            if not values or min(values) < 1:
                raise ConfigError(f"{name} {list(values)} must be non-empty positive integers")
        if not self.seeds:
            raise ConfigError("seeds must not be empty")

    def cells(self) -> list[tuple[int, int, int]]:
        """Every (N, K, seed), smallest N first."""
        return list(itertools.product(sorted(self.n_values), sorted(self.k_values), self.seeds))

    def as_dict(self) -> dict[str, Any]:
        """A loggable description."""
        return {
            "n_values": list(self.n_values),
            "k_values": list(self.k_values),
            "seeds": list(self.seeds),
            "minutes_per_material": self.minutes_per_material,
            "baselines": list(self.baselines),
            "n_baseline_train": self.n_baseline_train,
            "max_dictionary_strains": self.max_dictionary_strains,
        }


def cell_preset(
    preset: PhaseFractionPreset, n_materials: int, minutes_per_material: float | None
) -> PhaseFractionPreset:
    """The preset of one cell: the wall-clock cap scaled with N when one is given."""
    if minutes_per_material is None:
        return preset
    return preset.model_copy(update={"max_minutes": minutes_per_material * n_materials})


@dataclass
class CellResult:
    """One grid cell: the CNN's result and the baselines' on the same test mixtures.

    Attributes:
        n_materials: N.
        max_phases: K.
        seed: the training seed.
        phase: the CNN's :class:`~xrdpipe.training.phase_fractions.PhaseFractionResult` (its test
            set dropped after scoring, to keep the cell small).
        baselines: the baselines' results (predictions cut to ``phase.predictions``' rows).
        wall_s: wall time of the cell.
    """

    n_materials: int
    max_phases: int
    seed: int
    phase: Any
    baselines: list[BaselineResult] = field(default_factory=list)
    wall_s: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One table row per method."""
        base = {"N": self.n_materials, "K": self.max_phases, "seed": self.seed}
        rows = [
            {
                **base,
                "method": CNN,
                "tvd_mean": self.phase.test_tvd_mean,
                "tvd_std": self.phase.test_tvd_std,
                "mae": self.phase.test_mae,
                "fit_s": self.phase.train.wall_s,
            }
        ]
        for b in self.baselines:
            rows.append(
                {
                    **base,
                    "method": b.name,
                    "tvd_mean": b.tvd_mean,
                    "tvd_std": b.tvd_std,
                    "mae": b.mae,
                    "fit_s": b.fit_s + b.predict_s,
                }
            )
        return rows


def run_cell(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: PhaseFractionPreset,
    spec: GridSpec,
    n_materials: int,
    max_phases: int,
    seed: int,
    *,
    device: str | None = None,
    callbacks: Sequence[Callable[[dict], Any]] = (),
    progress: bool = False,
    record_dir: str | Path | None = None,
    on_baseline: Callable[[str], None] | None = None,
) -> CellResult:
    """Train and score one cell: the CNN, then every baseline on the same test mixtures.

    Args:
        store_path: the subset's pattern store.
        subset_config: the subset (profile, seed).
        preset: the CNN's training preset (before :func:`cell_preset`).
        spec: the grid (budget and baselines).
        n_materials: N.
        max_phases: K.
        seed: the training seed.
        device: training device (default the preset's).
        callbacks: the training loop's epoch callbacks.
        progress: progress bar of the training loop.
        record_dir: fixed-set records (default beside the store).
        on_baseline: called with each baseline's name before it runs.
    """
    from xrdpipe.patterns import MixtureConfig
    from xrdpipe.training.phase_fractions import train_phase_fractions

    start = time.perf_counter()
    result = train_phase_fractions(
        store_path,
        subset_config,
        cell_preset(preset, n_materials, spec.minutes_per_material),
        n_materials,
        max_phases,
        seed=seed,
        device=device,
        callbacks=callbacks,
        progress=progress,
        record_dir=record_dir,
        keep_test_set=bool(spec.baselines),
    )
    baselines: list[BaselineResult] = []
    if spec.baselines:
        test_x = result.test_patterns.numpy()
        test_y = result.test_fractions.numpy()
        profile = subset_config.profile
        mix_cfg = MixtureConfig(
            n_materials=n_materials,
            max_phases=max_phases,
            batch_size=512,
            fraction_mode=preset.mixtures.fraction_mode,
            phase_draw=preset.mixtures.phase_draw,
        )
        names = list(spec.baselines)
        regressors = [n for n in names if not n.startswith("nnls")]
        train_x = np.zeros((0, 1), np.float32)  # no regressor: nothing to fit
        train_y = np.zeros((0, n_materials), np.float32)
        if regressors:
            train_x, train_y = training_mixtures(
                store_path,
                result.materials,
                mix_cfg,
                profile,
                n=spec.n_baseline_train,
                seed=subset_config.seed + BASELINE_SEED_OFFSET + seed,
                strain_index=result.train_strain_index,
                n_bins=450,
            )
        reference = strained = None
        if "nnls_reference" in names:
            reference = dictionary_profiles(
                store_path, result.materials, profile, "reference", preset.mixtures.fraction_mode
            )
        if "nnls_strained" in names:
            strained = dictionary_profiles(
                store_path,
                result.materials,
                profile,
                "train",
                preset.mixtures.fraction_mode,
                strain_index=result.train_strain_index,
                max_strains=spec.max_dictionary_strains,
                seed=subset_config.seed,
            )
        baselines = run_fraction_baselines(
            train_x,
            train_y,
            test_x,
            test_y,
            reference,
            strained,
            names=names,
            seed=seed,
            profile=profile,
            progress=on_baseline,
        )
        keep = result.predictions.shape[0]
        for b in baselines:
            b.predictions = b.predictions[:keep]
    result.test_patterns = result.test_fractions = None
    return CellResult(
        n_materials=n_materials,
        max_phases=max_phases,
        seed=seed,
        phase=result,
        baselines=baselines,
        wall_s=time.perf_counter() - start,
    )


def grid_frame(cells: Sequence[CellResult]) -> pd.DataFrame:
    """Every (cell, method) as a row: N, K, seed, method, tvd_mean, tvd_std, mae, fit_s."""
    return pd.DataFrame([row for cell in cells for row in cell.rows()])


def grid_table(cells: Sequence[CellResult]) -> pd.DataFrame:
    """Mean and standard deviation over seeds of each cell's mean test TVD, per method.

    Returns:
        Columns ``N, K, method, tvd_mean, tvd_std_over_seeds, n_seeds, tvd_within`` (the
        mean over seeds of the within-test-set standard deviation), sorted by N, K, method
        with the CNN first.
    """
    frame = grid_frame(cells)
    if frame.empty:
        return frame
    grouped = frame.groupby(["N", "K", "method"], sort=False)
    table = grouped.agg(
        tvd_mean=("tvd_mean", "mean"),
        tvd_std_over_seeds=("tvd_mean", lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0),
        n_seeds=("seed", "nunique"),
        tvd_within=("tvd_std", "mean"),
    ).reset_index()
    order = {m: i for i, m in enumerate([CNN, *BASELINES])}
    table["_order"] = table["method"].map(order)
    return table.sort_values(["N", "K", "_order"]).drop(columns="_order").reset_index(drop=True)


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """The grid table as N, K rows and one ``mean +- std`` column per method."""
    if table.empty:
        return table
    cell = table.assign(
        value=[
            f"{m:.3f} ± {s:.3f}"
            for m, s in zip(table["tvd_mean"], table["tvd_std_over_seeds"], strict=True)
        ]
    )
    wide = cell.pivot(index=["N", "K"], columns="method", values="value")
    columns = [m for m in [CNN, *BASELINES] if m in wide.columns]
    return wide[columns].reset_index()


def plot_figure3(table: pd.DataFrame, path: str | Path, method: str = CNN) -> Path:
    """Paper 002's figure 3: mean test TVD against N, one line per K (error bars: seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = table[table["method"] == method]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, group in rows.groupby("K"):
        group = group.sort_values("N")
        ax.errorbar(
            group["N"],
            group["tvd_mean"],
            yerr=group["tvd_std_over_seeds"],
            marker="o",
            capsize=3,
            label=f"K = {k}",
        )
    for (n, k), value in PAPER_002_TVD.items():
        ax.scatter(
            [n], [value], marker="*", s=120, color="k", zorder=5, label=f"paper 002 (N={n}, K={k})"
        )
    ax.set(xlabel="N (materials)", ylabel="mean test TVD", title=f"{method}: test TVD vs N")
    ax.set_xticks(sorted(rows["N"].unique()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_methods(table: pd.DataFrame, path: str | Path) -> Path:
    """Mean test TVD of every method in every cell (grouped bars), the CNN beside baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    cells = table[["N", "K"]].drop_duplicates().sort_values(["N", "K"])
    methods = [m for m in [CNN, *BASELINES] if m in set(table["method"])]
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cells)), 4))
    x = np.arange(len(cells))
    for i, method in enumerate(methods):
        values = [
            table[(table.N == n) & (table.K == k) & (table.method == method)]["tvd_mean"].mean()
            for n, k in cells.itertuples(index=False)
        ]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=method)
    ax.set_xticks(x, [f"N={n}\nK={k}" for n, k in cells.itertuples(index=False)], fontsize=8)
    ax.set(ylabel="mean test TVD", title="CNN and baselines on the same test mixtures")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
