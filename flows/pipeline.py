"""Prefect flow ``pipeline``: fetch -> simulate -> train (both models) -> evaluate, as subflows.

The sequence, the skip rules and the defaults are :func:`xrdpipe.stages.pipeline.run_pipeline`'s,
the same as ``xrdpipe run``'s: this flow hands it the ``fetch``, ``simulate``, ``train`` and
``evaluate`` flows as its steps. A refresh that finds nothing new does no work: an offline
subset's fetch is skipped while its manifest is current (a COD subset is asked again, its
cached CIFs are not downloaded again), simulate is skipped when the store is complete and
current (a store made from another manifest or other simulation settings is simulated
again), and a model is trained again only when the store or the training configuration
changed since the model this pipeline last registered in the same MLflow tracking store
(``retrain`` forces it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger

from flows.evaluate import evaluate
from flows.fetch import fetch
from flows.simulate import simulate
from flows.train import train
from xrdpipe.config import Settings
from xrdpipe.errors import ConfigError
from xrdpipe.stages.phase_set import phase_set_pipeline
from xrdpipe.stages.pipeline import DEFAULTS, PipelineOptions, Steps, run_pipeline

PipelineTask = Literal["phase-fractions", "lattice-system"]


@flow(name="pipeline", log_prints=True)
def pipeline(
    subset: str = DEFAULTS.subset,
    preset: str | None = None,
    tasks: list[PipelineTask] | None = None,
    n_materials: int = DEFAULTS.n_materials,
    max_phases: int = DEFAULTS.max_phases,
    seed: int = DEFAULTS.seed,
    overwrite: bool = False,
    retrain: bool = False,
    mirror_dir: str | None = None,
    cod_url: str | None = None,
    catalog: str | None = None,
    evaluate_grid: bool = DEFAULTS.evaluate_grid,
    grid_n_values: list[int] = list(DEFAULTS.grid_n_values),  # noqa: B006, B008 - never mutated
    grid_k_values: list[int] = list(DEFAULTS.grid_k_values),  # noqa: B006, B008
    grid_baselines: list[str] = list(DEFAULTS.grid_baselines),  # noqa: B006, B008
    grid_baseline_train: int = DEFAULTS.grid_baseline_train,
    phases: str | None = None,
    instrument: str | None = None,
) -> dict:
    """Fetch, simulate, train and evaluate one subset; skip what is already up to date.

    Args:
        subset: a subset of ``catalog.yaml`` (replaced by the phase set's with ``phases``).
        preset: training preset of both models (``cpu``, ``paper`` or one of the catalog);
            ``None``: ``cpu``, or ``phase-set`` with ``phases``.
        tasks: models to train (default both: ``phase-fractions`` and, on a store with
            symmetry-preserving strain, ``lattice-system``).
        n_materials: N of the phase-fraction model; with ``phases``, the default (5) means
            every phase of the set.
        max_phases: K of the phase-fraction model.
        seed: training seed.
        overwrite: simulate the whole store again even if it is up to date (a store made
            from another manifest or other simulation settings is always replaced: what a
            refresh that found new COD entries needs).
        retrain: train even when nothing changed since the last registered model.
        mirror_dir: read this local COD mirror instead of the subset's source.
        cod_url: query this COD base URL instead of the settings' one.
        catalog: path of another catalog file.
        evaluate_grid: finish with a small N/K grid (the ``evaluate`` flow, same preset)
            and its report; skipped when nothing was retrained and a report exists.
        grid_n_values: N values of that grid.
        grid_k_values: K values of that grid.
        grid_baselines: baselines beside the CNN.
        grid_baseline_train: training mixtures of the regression baselines.
        phases: a folder of CIF files, a lab's phase set: its catalog is written
            (:func:`xrdpipe.stages.phase_set.phase_set_pipeline`, as ``xrdpipe run
            --phases``), the phase-fraction model alone is trained on every phase.
        instrument: with ``phases``, a measured scan whose lines, range, slit and radius
            the phase set's profile takes.
    """
    options = PipelineOptions(
        subset=subset,
        preset=preset or DEFAULTS.preset,
        tasks=DEFAULTS.tasks if tasks is None else tuple(tasks),
        n_materials=n_materials,
        max_phases=max_phases,
        seed=seed,
        overwrite=overwrite,
        retrain=retrain,
        evaluate_grid=evaluate_grid,
        grid_n_values=tuple(grid_n_values),
        grid_k_values=tuple(grid_k_values),
        grid_baselines=tuple(grid_baselines),
        grid_baseline_train=grid_baseline_train,
        mirror_dir=mirror_dir,
        cod_url=cod_url,
        catalog=catalog,
    )
    settings = Settings()
    if phases is not None:
        options = phase_set_pipeline(
            options,
            settings,
            Path(phases),
            None if instrument is None else Path(instrument),
            preset=preset,
            n_materials=None if n_materials == DEFAULTS.n_materials else n_materials,
        )
    elif instrument is not None:
        raise ConfigError("instrument needs phases (a folder of CIF files)")
    steps = Steps(fetch=fetch, simulate=simulate, train=train, evaluate=evaluate)
    return run_pipeline(options, settings, steps, log=get_run_logger().info)


if __name__ == "__main__":
    pipeline()
