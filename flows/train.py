"""Prefect flow ``train``: one model of the papers on a subset, tracked and registered in MLflow."""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from xrdpipe import tracking
from xrdpipe.config import Settings, SubsetConfig, load_catalog
from xrdpipe.stages.train import preset_kind, train_task
from xrdpipe.store import store_exists

TaskName = Literal[
    "phase-fractions", "lattice-system", "crystal-system", "space-group", "dimensionality"
]


@task(name="train-and-log", cache_policy=NO_CACHE)
def train_and_log(
    task_name: str,
    subset: str,
    config: SubsetConfig,
    settings: Settings,
    preset_name: str,
    catalog: str | None,
    n_materials: int,
    max_phases: int,
    seed: int,
    protocol: str,
) -> dict:
    logger = get_run_logger()
    preset = load_catalog(catalog, settings).preset(preset_kind(task_name), preset_name)

    def log_epoch(record: dict) -> None:
        logger.info(
            "epoch %d: train loss %.4g, val loss %.4g, %s",
            record["epoch"],
            record["train_loss"],
            record["val_loss"],
            record["metrics"],
        )

    tracking.configure(settings.tracking_uri())
    result, tracked = train_task(
        task_name,
        subset,
        config,
        preset_name,
        preset,
        settings.store_path(subset),
        n_materials=n_materials,
        max_phases=max_phases,
        seed=seed,
        protocol=protocol,
        progress=False,
        callbacks=[log_epoch],
    )
    metrics = result.metrics()
    logger.info(
        "metrics %s; MLflow run %s; registered %s version %s (@%s)",
        metrics,
        tracked.run_id,
        tracked.registered_name,
        tracked.version,
        tracked.alias,
    )
    return {
        "run_id": tracked.run_id,
        "model_uri": tracked.model_uri,
        "registered_model": tracked.registered_name,
        "version": tracked.version,
        "metrics": metrics,
    }


@flow(name="train", log_prints=True)
def train(
    task: TaskName = "phase-fractions",
    subset: str = "demo",
    preset: str = "cpu",
    n_materials: int = 5,
    max_phases: int = 3,
    seed: int = 0,
    protocol: Literal["strain", "material"] = "strain",
    catalog: str | None = None,
) -> dict:
    """Train one model on a subset's pattern store; log and register it in MLflow.

    Simulates the subset first when its store is missing.

    Args:
        task: which model and target.
        subset: a subset of ``catalog.yaml``.
        preset: a training preset of the catalog (``cpu``, ``paper``).
        n_materials: N of the phase-fraction model.
        max_phases: K of the phase-fraction model.
        seed: training seed.
        protocol: classifier split, ``strain`` (paper 000) or ``material``.
        catalog: path of another catalog file.
    """
    settings, config = resolve(subset, None, None, catalog)
    load_catalog(catalog, settings).preset(preset_kind(task), preset)  # fail before simulating
    if not store_exists(settings.store_path(subset)):
        from flows.simulate import simulate

        get_run_logger().info("no pattern store for %r yet: simulating it first", subset)
        simulate(subset=subset, catalog=catalog)
    return train_and_log(
        task, subset, config, settings, preset, catalog, n_materials, max_phases, seed, protocol
    )


if __name__ == "__main__":
    train()
