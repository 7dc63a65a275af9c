"""Prefect flow ``evaluate`` (deployment ``nk-grid``): paper 002's N/K grid with baselines.

Thin: resolves the catalog, makes sure the store exists, and hands the grid to
:func:`xrdpipe.stages.evaluate.evaluate_subset`, which logs every cell from this process as a
child run of one MLflow parent run and writes the report.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.common import resolve
from xrdpipe.config import load_catalog
from xrdpipe.evaluation.baselines import BASELINES
from xrdpipe.stages.evaluate import evaluate_subset, evaluation_record, grid_spec
from xrdpipe.store import store_exists


@flow(name="evaluate", log_prints=True)
def evaluate(
    subset: str = "hoefer2024",
    preset: str = "grid-cpu",
    n_values: list[int] = [5, 10, 15, 20],  # noqa: B006 - Prefect parameters, never mutated
    k_values: list[int] = [3, 5, 7],  # noqa: B006
    seeds: list[int] = [0],  # noqa: B006
    minutes_per_material: float | None = None,
    baselines: list[str] = list(BASELINES),  # noqa: B006
    n_baseline_train: int = 20_000,
    cell_workers: int = 1,
    device: str | None = None,
    classification_subset: str | None = None,
    classification_preset: str = "cv",
    classification_synthetic_manifest: str | None = None,
    catalog: str | None = None,
) -> dict:
    """Train and score every (N, K, seed) cell, the baselines beside, and report.

    Args:
        subset: a subset of ``catalog.yaml`` (simulated first if its store is missing).
        preset: a phase-fraction preset (``grid-cpu`` fits the 12-cell grid in ~2 h on 2
            cores; ``paper`` is for GPUs).
        n_values: N values (paper 002: 5, 10, 15, 20).
        k_values: K values (paper 002: 3, 5, 7).
        seeds: training seeds per cell (paper 002: three).
        minutes_per_material: wall-clock cap per material of each cell's training.
        baselines: which baselines to run beside the CNN.
        n_baseline_train: training mixtures of the regression baselines.
        cell_workers: cells in parallel (Dask worker processes); 1 runs them in turn.
        device: training device (default the preset's).
        classification_subset: also run paper 000's classifier tables on this subset.
        classification_preset: the a-CNN's preset in those tables (``cv``: 45 s a fold;
            or a catalog classifier preset).
        classification_synthetic_manifest: a synthetic store's ``manifest.parquet``: those
            tables gain the synthetic-to-real column (docs/evaluation.md).
        catalog: path of another catalog file.
    """
    logger = get_run_logger()
    settings, _ = resolve(subset, None, None, catalog)
    spec = grid_spec(n_values, k_values, seeds, baselines, n_baseline_train, minutes_per_material)
    load_catalog(catalog, settings).preset("phase_fractions", preset)  # fail before simulating
    if not store_exists(settings.store_path(subset)):
        from flows.simulate import simulate

        logger.info("no pattern store for %r yet: simulating it first", subset)
        simulate(subset=subset, catalog=catalog)
    outcome = evaluate_subset(
        settings,
        subset,
        preset,
        spec,
        cell_workers=cell_workers,
        device=device,
        classification_subset=classification_subset,
        classification_preset=classification_preset,
        classification_synthetic_manifest=classification_synthetic_manifest,
        catalog=catalog,
        log=logger.info,
    )
    logger.info("grid table:\n%s", outcome.wide.to_string(index=False))
    logger.info("report: %s", outcome.report_path)
    return evaluation_record(outcome)


if __name__ == "__main__":
    evaluate()
