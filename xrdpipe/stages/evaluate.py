"""Run an evaluation end to end: the N/K grid (and optionally the classifier tables), logged.

The orchestration shared by ``xrdpipe evaluate`` and the Prefect flow ``evaluate``: it runs
the cells of :mod:`xrdpipe.evaluation.grid` one after another in this process, or in
parallel on Dask (``cell_workers > 1`` or ``XRDPIPE_DASK_ADDRESS``), and logs every finished
cell from this process (SQLite tracking stores take one writer) as a child run of one
parent run; then the table, paper 002's figure 3, the baseline comparison, the report and,
when asked, paper 000's classification tables.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from xrdpipe import tracking
from xrdpipe.config import PhaseFractionPreset, Settings, SubsetConfig
from xrdpipe.evaluation import grid as grid_mod
from xrdpipe.evaluation.report import Report, ReportSection, write_report

Log = Callable[[str], None]


@dataclass
class EvaluationOutcome:
    """What an evaluation produced."""

    parent_run_id: str
    table: pd.DataFrame
    wide: pd.DataFrame
    cells: list[dict[str, Any]] = field(default_factory=list)
    report_path: Path | None = None
    wall_s: float = 0.0
    classification: dict[str, Any] | None = None


def _cell_kwargs(store_path: Path, config: SubsetConfig, preset: PhaseFractionPreset, spec):
    return {"store_path": store_path, "subset_config": config, "preset": preset, "spec": spec}


def run_cell_in_worker(**kwargs: Any) -> grid_mod.CellResult:
    """:func:`~xrdpipe.evaluation.grid.run_cell` inside a Dask worker, on one thread.

    The cell reads its store through xarray, whose lazy arrays would otherwise be computed
    on the cluster from inside a task: the task then secedes from the worker's thread pool
    and the worker starts the next cell beside it, so every cell ran at once, each at a
    fraction of a core (seen on the first 12-cell run). The synchronous scheduler keeps one
    cell per worker thread.
    """
    import dask

    with dask.config.set(scheduler="synchronous"):
        return grid_mod.run_cell(**kwargs)


def run_cells(
    settings: Settings,
    store_path: Path,
    config: SubsetConfig,
    preset: PhaseFractionPreset,
    spec: grid_mod.GridSpec,
    on_cell: Callable[[grid_mod.CellResult], None],
    *,
    cell_workers: int = 1,
    device: str | None = None,
    log: Log = print,
) -> None:
    """Run every cell, calling ``on_cell`` in this process as each one finishes."""
    cells = spec.cells()
    common = _cell_kwargs(store_path, config, preset, spec)
    if cell_workers <= 1 and not settings.dask_address:
        for i, (n, k, seed) in enumerate(cells, 1):
            log(f"cell {i}/{len(cells)}: N={n} K={k} seed={seed}")
            on_cell(
                grid_mod.run_cell(
                    **common,
                    n_materials=n,
                    max_phases=k,
                    seed=seed,
                    device=device,
                    on_baseline=lambda name: log(f"  baseline {name}"),
                )
            )
        return
    from distributed import as_completed

    from xrdpipe.parallel import dask_client

    with dask_client(settings, n_workers=cell_workers) as client:
        # Largest N first, and submitted in that order too: a free worker starts the first
        # task it receives before the later submissions (and their priorities) arrive.
        by_size = sorted(cells, key=lambda cell: -cell[0])
        futures = [
            client.submit(
                run_cell_in_worker,
                **common,
                n_materials=n,
                max_phases=k,
                seed=seed,
                device=device,
                key=f"grid-cell-N{n}-K{k}-s{seed}-{time.time_ns()}",
                priority=n,  # the longest cells first
            )
            for n, k, seed in by_size
        ]
        log(f"{len(futures)} cells submitted to {client.scheduler.address}")
        for done, future in enumerate(as_completed(futures, loop=client.loop), 1):
            cell = future.result()
            log(f"cell {done}/{len(futures)} done: N={cell.n_materials} K={cell.max_phases}")
            on_cell(cell)


def _classification_section(classification: dict[str, Any], folder: Path) -> ReportSection:
    tables = [(name, frame) for name, frame in classification.get("tables", {}).items()]
    images = [(name, Path(p)) for name, p in classification.get("images", {}).items()]
    return ReportSection(
        title="Crystal-system classification (paper 000)",
        paragraphs=classification.get("paragraphs", []),
        tables=tables,
        images=images,
    )


def run_evaluation(
    settings: Settings,
    subset: str,
    config: SubsetConfig,
    preset_name: str,
    preset: PhaseFractionPreset,
    spec: grid_mod.GridSpec,
    *,
    cell_workers: int = 1,
    device: str | None = None,
    register: bool = True,
    classification: Callable[[Path], dict[str, Any]] | None = None,
    classification_subset: str | None = None,
    classification_preset: str = "cv",
    classification_synthetic_manifest: str | Path | None = None,
    catalog: str | Path | None = None,
    log: Log = print,
) -> EvaluationOutcome:
    """The N/K grid of one subset, logged under one parent run, with its report.

    Args:
        settings: site settings (tracking URI, data dir, Dask address).
        subset: the subset's name (its store must be simulated).
        config: its config.
        preset_name: the phase-fraction preset's name.
        preset: the preset.
        spec: the grid.
        cell_workers: cells at a time (Dask worker processes); 1: in this process.
        device: training device (default the preset's).
        register: register each cell's model (alias ``candidate``; ``champion`` on merit).
        classification: optional ``fn(folder) -> {"tables", "images", "paragraphs",
            "metrics"}`` run after the grid (paper 000's tables), added to the report.
        classification_subset: else, when given, those tables on this subset
            (:func:`classification_runner` with ``classification_preset`` and ``catalog``).
        classification_preset: the classifier preset of those tables.
        classification_synthetic_manifest: a synthetic store's manifest: those tables gain
            the ``synthetic-to-real`` column (:func:`classification_runner`).
        catalog: the catalog file they read (default the packaged one).
        log: progress lines.
    """
    start = time.perf_counter()
    if classification is None and classification_subset:
        classification = classification_runner(
            settings,
            classification_subset,
            classification_preset,
            catalog,
            synthetic_manifest=classification_synthetic_manifest,
            log=log,
        )
    store_path = settings.store_path(subset)
    tracking.configure(settings.tracking_uri())
    parent = tracking.start_grid_run(
        subset, preset_name, spec.as_dict(), {"preset": preset.model_dump(mode="json")}
    )
    log(f"MLflow parent run {parent} ({settings.tracking_uri()})")
    cells: list[grid_mod.CellResult] = []
    logged: list[dict[str, Any]] = []

    def on_cell(cell: grid_mod.CellResult) -> None:
        cells.append(cell)
        info = tracking.log_grid_cell(parent, cell, subset, preset_name, register=register)
        logged.append(info)
        scores = ", ".join(f"{r['method']} {r['tvd_mean']:.4f}" for r in cell.rows())
        log(f"  N={cell.n_materials} K={cell.max_phases} s={cell.seed}: TVD {scores}")

    try:
        run_cells(
            settings,
            store_path,
            config,
            preset,
            spec,
            on_cell,
            cell_workers=cell_workers,
            device=device,
            log=log,
        )
    except BaseException:
        tracking.finish_grid_run(parent, [], status="FAILED")
        raise
    table = grid_mod.grid_table(cells)
    wide = grid_mod.wide_table(table)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table.to_csv(folder / "grid_table.csv", index=False)
        grid_mod.grid_frame(cells).to_csv(folder / "grid_cells.csv", index=False)
        figure3 = grid_mod.plot_figure3(table, folder / "figure3_tvd_vs_n.png")
        methods = grid_mod.plot_methods(table, folder / "tvd_by_method.png")
        (folder / "grid_runs.json").write_text(json.dumps(logged, indent=1, default=str))
        clf = classification(folder) if classification is not None else None
        materials = {
            f"N={c.n_materials}": ", ".join(
                f"{m} {f}" for m, f in zip(c.phase.materials, c.phase.formulas, strict=True)
            )
            for c in cells
        }
        cnn = table[table["method"] == grid_mod.CNN]
        paper = [
            f"paper 002 reports a mean test TVD of about {v} at N={n}, K={k}; ours: "
            + ", ".join(f"{r.tvd_mean:.4f}" for r in cnn[(cnn.N == n) & (cnn.K == k)].itertuples())
            for (n, k), v in grid_mod.PAPER_002_TVD.items()
        ]
        report = Report(
            title=f"xrdpipe evaluation: {subset}, preset {preset_name}",
            summary={
                "subset": subset,
                "preset": preset_name,
                "grid": json.dumps(spec.as_dict()),
                "cells": len(cells),
                "wall time (min)": f"{(time.perf_counter() - start) / 60:.1f}",
                "MLflow parent run": parent,
                "store fingerprint": cells[0].phase.store["store_fingerprint"] if cells else "",
            },
            sections=[
                ReportSection(
                    title="Phase fractions: N/K grid (paper 002)",
                    paragraphs=[
                        "Mean test TVD over seeds (± standard deviation over seeds) of the CNN "
                        "and every baseline, each on the same fixed test mixtures of the "
                        "200 held-out strain conditions.",
                        *paper,
                    ],
                    tables=[("TVD per cell and method", wide), ("long form", table)],
                    images=[
                        ("Figure 3: mean test TVD against N, one line per K", figure3),
                        ("CNN and baselines per cell", methods),
                    ],
                ),
                ReportSection(
                    title="Materials (first N of the seeded grid order)",
                    tables=[
                        (
                            "materials",
                            pd.DataFrame(
                                {"N": list(materials), "materials": list(materials.values())}
                            ).drop_duplicates(),
                        )
                    ],
                ),
            ],
        )
        if clf is not None:
            report.sections.append(_classification_section(clf, folder))
        report_path = write_report(report, folder / "report.html")
        artifacts = [
            folder / "grid_table.csv",
            folder / "grid_cells.csv",
            figure3,
            methods,
            folder / "grid_runs.json",
            report_path,
        ]
        if clf is not None:
            artifacts += [Path(p) for p in clf.get("artifacts", [])]
        summary = {
            f"mean_{row.method}_tvd_N{row.N}_K{row.K}": row.tvd_mean for row in table.itertuples()
        }
        if clf is not None:
            summary |= clf.get("metrics", {})
        summary["wall_s"] = time.perf_counter() - start
        tracking.finish_grid_run(parent, artifacts, summary)
        kept = _keep_report(settings, report_path, f"{subset}-{parent[:8]}.html")
    return EvaluationOutcome(
        parent_run_id=parent,
        table=table,
        wide=wide,
        cells=logged,
        report_path=kept,
        wall_s=time.perf_counter() - start,
        classification=None if clf is None else {"metrics": clf.get("metrics", {})},
    )


def grid_spec(
    n_values: Sequence[int],
    k_values: Sequence[int],
    seeds: Sequence[int] = (0,),
    baselines: Sequence[str] | None = None,
    n_baseline_train: int = 20_000,
    minutes_per_material: float | None = None,
) -> grid_mod.GridSpec:
    """The grid of the command line's and the flows' lists (``baselines`` None: all)."""
    return grid_mod.GridSpec(
        n_values=tuple(n_values),
        k_values=tuple(k_values),
        seeds=tuple(seeds),
        minutes_per_material=minutes_per_material,
        baselines=tuple(baselines) if baselines else grid_mod.GridSpec().baselines,
        n_baseline_train=n_baseline_train,
    )


def evaluate_subset(
    settings: Settings,
    subset: str,
    preset_name: str,
    spec: grid_mod.GridSpec,
    *,
    catalog: str | Path | None = None,
    log: Log = print,
    **options: Any,
) -> EvaluationOutcome:
    """:func:`run_evaluation` of a catalog subset and preset: what the CLI and the flow call.

    Reads the catalog (``catalog``, else the settings' or the packaged one) and checks that
    the subset's store exists; ``options`` are :func:`run_evaluation`'s keywords
    (``cell_workers``, ``device``, ``classification_subset``, ``classification_preset``,
    ``classification_synthetic_manifest``).

    Raises:
        ConfigError: an unknown subset or phase-fraction preset.
        StoreError: the store is not simulated yet.
    """
    from xrdpipe.config import load_catalog, resolve_subset
    from xrdpipe.errors import StoreError
    from xrdpipe.store import store_exists

    cat = load_catalog(catalog, settings)
    config = resolve_subset(cat, subset, settings)
    preset = cat.preset("phase_fractions", preset_name)
    if not store_exists(settings.store_path(subset)):
        raise StoreError(
            f"no pattern store for {subset!r} under {settings.data_dir}: run "
            f"`xrdpipe fetch {subset}` and `xrdpipe simulate {subset}` first"
        )
    return run_evaluation(
        settings, subset, config, preset_name, preset, spec, catalog=catalog, log=log, **options
    )


def describe_evaluation(outcome: EvaluationOutcome) -> str:
    """A few lines for people: the grid's table, the wall time, the run and the report."""
    return (
        f"{outcome.wide.to_string(index=False)}\n"
        f"wall time {outcome.wall_s / 60:.1f} min; MLflow run {outcome.parent_run_id}\n"
        f"report: {outcome.report_path}"
    )


def evaluation_record(outcome: EvaluationOutcome) -> dict[str, Any]:
    """What the evaluate flow returns: the parent run, the report, the table, the wall time."""
    return {
        "parent_run_id": outcome.parent_run_id,
        "report": str(outcome.report_path),
        "table": outcome.table.to_dict("records"),
        "wall_s": outcome.wall_s,
    }


def _keep_report(settings: Settings, report_path: Path, name: str) -> Path:
    """A copy of a report under ``<data_dir>/reports/`` (the MLflow artifact is the record)."""
    kept = settings.data_dir / "reports" / name
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(report_path.read_bytes())
    return kept


def run_classification_report(
    settings: Settings,
    subset: str,
    preset_name: str = "cv",
    catalog: str | Path | None = None,
    *,
    target: str = "lattice_system",
    synthetic_manifest: str | Path | None = None,
    synthetic_patterns: int = 20_000,
    synthetic_protocols: Sequence[str] = ("synthetic-to-real",),
    log: Log = print,
) -> tuple[str, Path, dict[str, Any]]:
    """Paper 000's tables alone: one MLflow run with the tables, plots and a report.

    The run (experiment ``xrdpipe/classification-cv``) holds every method's mean accuracy and
    macro-F1 per protocol as metrics, the table as CSV, the confusion matrices and CAM
    figures, and ``report.html``; a copy of the report is kept under
    ``<data_dir>/reports/``. With ``synthetic_manifest``, the ``synthetic-to-real`` column
    too (:func:`xrdpipe.stages.classifiers.run_classification_evaluation`).

    Returns:
        ``(run id, kept report path, the runner's output)``.
    """
    start = time.perf_counter()
    run = classification_runner(
        settings,
        subset,
        preset_name,
        catalog,
        target=target,
        synthetic_manifest=synthetic_manifest,
        synthetic_patterns=synthetic_patterns,
        synthetic_protocols=synthetic_protocols,
        log=log,
    )
    tracking.configure(settings.tracking_uri())
    protocols = ["strain", "material"] + (list(synthetic_protocols) if synthetic_manifest else [])
    spec: dict[str, Any] = {"target": target, "protocols": protocols, "folds": 5}
    if synthetic_manifest:
        spec |= {
            "synthetic_manifest": str(synthetic_manifest),
            "synthetic_patterns": synthetic_patterns,
        }
    run_id = tracking.start_grid_run(
        subset, preset_name, spec, experiment=tracking.CLASSIFICATION_EXPERIMENT
    )
    log(f"MLflow run {run_id} ({settings.tracking_uri()})")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            out = run(folder)
            report = Report(
                title=f"xrdpipe classification: {subset} ({target}), preset {preset_name}",
                summary={
                    "subset": subset,
                    "target": target,
                    "preset": preset_name,
                    "wall time (min)": f"{(time.perf_counter() - start) / 60:.1f}",
                    "MLflow run": run_id,
                },
                sections=[_classification_section(out, folder)],
            )
            report_path = write_report(report, folder / "report.html")
            artifacts = [Path(p) for p in out.get("artifacts", [])] + [report_path]
            metrics = dict(out.get("metrics", {})) | {"wall_s": time.perf_counter() - start}
            name = f"{subset}-classification-{run_id[:8]}.html"
            kept = _keep_report(settings, report_path, name)
            tracking.finish_grid_run(run_id, artifacts, metrics)  # the files live in tmp
    except BaseException:
        tracking.finish_grid_run(run_id, [], status="FAILED")
        raise
    return run_id, kept, out


def classification_runner(
    settings: Settings,
    subset: str,
    preset_name: str = "cv",
    catalog: str | Path | None = None,
    *,
    target: str = "lattice_system",
    synthetic_manifest: str | Path | None = None,
    synthetic_patterns: int = 20_000,
    synthetic_protocols: Sequence[str] = ("synthetic-to-real",),
    log: Log = print,
) -> Callable[[Path], dict[str, Any]]:
    """Paper 000's tables on ``subset`` as a step of :func:`run_evaluation` (its report section).

    Both protocols, all nine methods, 5 folds; with ``synthetic_manifest`` the
    ``synthetic-to-real`` column too (at most ``synthetic_patterns`` training patterns).
    The a-CNN of each fold trains with ``preset_name``, a classifier preset of the catalog:
    ``cv`` (the ``binned`` variant, at most 45 s a fold: the tables take ~15 minutes on 2
    cores), ``paper`` (the paper's training, for a GPU) or any other.
    """
    from xrdpipe.config import load_catalog, resolve_subset
    from xrdpipe.stages.classifiers import check_synthetic_options, run_classification_evaluation

    cat = load_catalog(catalog, settings)
    config = resolve_subset(cat, subset, settings)
    preset = cat.preset("classifier", preset_name)
    store_path = settings.store_path(subset)

    check_synthetic_options(synthetic_manifest, synthetic_patterns, 4, synthetic_protocols)

    def run(folder: Path) -> dict[str, Any]:
        log(f"classification tables on {subset} ({target})")
        evaluation = run_classification_evaluation(
            store_path,
            config,
            preset,
            target=target,
            synthetic_manifest=synthetic_manifest,
            synthetic_patterns=synthetic_patterns,
            synthetic_protocols=synthetic_protocols,
            plot_dir=folder / "classification",
        )
        table = evaluation.table.copy()
        table.columns = [" ".join(str(c) for c in col if c).strip() for col in table.columns]
        table = table.reset_index()
        table_path = folder / "classification_table.csv"
        table.to_csv(table_path, index=False)
        metrics: dict[str, float] = {}
        for protocol, result in evaluation.results.items():
            summary = result.summary()
            for method in summary.index:
                for metric in ("accuracy", "macro_f1"):
                    metrics[f"clf_{protocol}_{method}_{metric}"] = float(
                        summary.loc[method, f"{metric}_mean"]
                    )
        log(table.to_string(index=False))
        paragraphs = []
        s2r = evaluation.results.get("synthetic-to-real")
        if s2r is not None:
            sizes = s2r.config
            paragraphs.append(
                "Protocol 'synthetic-to-real': every method trained once on measured-like "
                f"renders of {sizes['structures']} + {sizes['validation_structures']} "
                f"synthetic crystals x {sizes['draws']} ({sizes['patterns']} patterns; the "
                "second number stops the a-CNN early) and tested on "
                f"{sizes['test_draws']} measured-like renders of each of these "
                f"{sizes['test_structures']} real structures (another random stream); its ± is "
                f"the standard deviation over {sizes['n_boot']} bootstrap replicates of the "
                "test structures, not over folds."
            )
        if "synthetic+material" in evaluation.results:
            paragraphs.append(
                "Protocol 'synthetic+material': the 'material' folds over these structures "
                "(measured-like renders), each fold trained on the synthetic patterns plus "
                "the other folds' real structures; mean ± std over folds."
            )
        title = "5-fold mean ± std" + (", synthetic-to-real ± bootstrap std" if s2r else "")
        return {
            "tables": {f"{target}: {title}": table},
            "images": {name: path for name, path in evaluation.plots.items()},
            "paragraphs": [
                f"{len(evaluation.material_ids)} materials of {subset}, classes "
                f"{', '.join(evaluation.class_names)}; protocol 'strain' = paper 000's folds "
                "over strain conditions of the same materials, 'material' = grouped folds "
                "(no material in both training and test). Paper 000 reports 95.6 % for the "
                "a-CNN on seven lattice systems.",
                f"The a-CNN is the '{preset.model.variants[0]}' variant (preset "
                f"'{preset_name}'), at most {preset.train.epochs} epochs"
                + (f" or {preset.train.max_minutes} min" if preset.train.max_minutes else "")
                + " of training per fold; the classical methods see the patterns binned to "
                "450 windows.",
                *paragraphs,
            ],
            "metrics": metrics,
            "artifacts": [table_path, *evaluation.plots.values()],
        }

    return run
