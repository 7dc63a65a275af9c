"""Prefect flow ``train``: one model of the papers on a subset, tracked and registered in MLflow."""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from xrdpipe.config import Settings, load_catalog
from xrdpipe.stages.train import preset_kind, train_subset, training_record
from xrdpipe.store import store_exists

TaskName = Literal[
    "phase-fractions", "lattice-system", "crystal-system", "space-group", "dimensionality"
]


@task(name="train-and-log", cache_policy=NO_CACHE)
def train_and_log(
    task_name: str,
    subset: str,
    settings: Settings,
    preset_name: str,
    catalog: str | None,
    n_materials: int,
    max_phases: int,
    seed: int,
    protocol: str,
) -> dict:
    logger = get_run_logger()

    def log_epoch(record: dict) -> None:
        logger.info(
            "epoch %d: train loss %.4g, val loss %.4g, %s",
            record["epoch"],
            record["train_loss"],
            record["val_loss"],
            record["metrics"],
        )

    result, tracked = train_subset(
        settings,
        task_name,
        subset,
        preset_name,
        catalog=catalog,
        n_materials=n_materials,
        max_phases=max_phases,
        seed=seed,
        protocol=protocol,
        progress=False,
        callbacks=[log_epoch],
    )
    out = training_record(result, tracked)
    logger.info(
        "metrics %s; MLflow run %s; registered %s version %s (@%s)",
        out["metrics"],
        tracked.run_id,
        tracked.registered_name,
        tracked.version,
        tracked.alias,
    )
    return out


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
    settings, _ = resolve(subset, None, None, catalog)
    load_catalog(catalog, settings).preset(preset_kind(task), preset)  # fail before simulating
    if not store_exists(settings.store_path(subset)):
        from flows.simulate import simulate

        get_run_logger().info("no pattern store for %r yet: simulating it first", subset)
        simulate(subset=subset, catalog=catalog)
    return train_and_log(
        task, subset, settings, preset, catalog, n_materials, max_phases, seed, protocol
    )


if __name__ == "__main__":
    train()
