"""Prefect flow ``pipeline``: fetch -> simulate -> train (both models), as subflows, in order.

A refresh that finds nothing new does no work: fetch reuses its cached CIFs (the manifest
comes out byte-identical), simulate resumes and skips every completed block (a store made
from another manifest or other simulation settings is simulated again), and a model is
trained again only when the store (its fingerprint covers the manifest's sha256 and the
subset's simulation settings) or the training configuration changed since the model this
pipeline last registered in the same MLflow tracking store (``retrain`` forces it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger

from flows.common import resolve
from flows.fetch import fetch
from flows.simulate import simulate
from flows.train import train
from xrdpipe.config import load_catalog
from xrdpipe.stages.refresh import store_is_stale, training_identity
from xrdpipe.stages.train import preset_kind

TRAINED_RECORD = "trained.json"
"""Per subset: what the pipeline last trained and registered, keyed by training identity."""

PipelineTask = Literal["phase-fractions", "lattice-system"]


def identity_key(identity: dict[str, Any]) -> str:
    """SHA-256 of the identity as sorted JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _read_record(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@flow(name="pipeline", log_prints=True)
def pipeline(
    subset: str = "demo",
    preset: str = "cpu",
    tasks: list[PipelineTask] | None = None,
    n_materials: int = 5,
    max_phases: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    retrain: bool = False,
    mirror_dir: str | None = None,
    cod_url: str | None = None,
    catalog: str | None = None,
    evaluate_grid: bool = True,
    grid_n_values: list[int] = [5],  # noqa: B006 - Prefect parameters, never mutated
    grid_k_values: list[int] = [3],  # noqa: B006
    grid_baselines: list[str] = ["ridge", "knn", "nnls_reference"],  # noqa: B006
    grid_baseline_train: int = 5000,
) -> dict:
    """Fetch, simulate, train and evaluate one subset; skip what is already up to date.

    Args:
        subset: a subset of ``catalog.yaml``.
        preset: training preset of both models (``cpu``, ``paper`` or one of the catalog).
        tasks: models to train (default both: ``phase-fractions`` and, on a store with
            symmetry-preserving strain, ``lattice-system``).
        n_materials: N of the phase-fraction model.
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
    """
    logger = get_run_logger()
    settings, config = resolve(subset, mirror_dir, cod_url, catalog)
    presets = load_catalog(catalog, settings)
    chosen = list(tasks) if tasks is not None else ["phase-fractions", "lattice-system"]
    for task in chosen:  # fail on a bad preset before any work
        presets.preset(preset_kind(task), preset)

    fetched = fetch(subset=subset, mirror_dir=mirror_dir, cod_url=cod_url, catalog=catalog)
    if not overwrite and store_is_stale(settings, subset, config):
        logger.info("the manifest or the simulation settings changed: simulating %r again", subset)
        overwrite = True
    simulated = simulate(
        subset=subset, overwrite=overwrite, mirror_dir=mirror_dir, cod_url=cod_url, catalog=catalog
    )

    record_path = settings.subset_dir(subset) / TRAINED_RECORD
    record = _read_record(record_path)
    trained: dict[str, Any] = {}
    for task in chosen:
        if task == "lattice-system" and config.simulation.strain_mode != "symmetry":
            trained[task] = {"skipped": f"{subset} uses {config.simulation.strain_mode} strain"}
            logger.info("no lattice-system classifier: %s", trained[task]["skipped"])
            continue
        arguments: dict[str, Any] = {"seed": seed}
        if task == "phase-fractions":
            arguments |= {"n_materials": n_materials, "max_phases": max_phases}
        else:
            arguments["protocol"] = "strain"
        identity = training_identity(
            settings,
            subset,
            config,
            task,
            presets.preset(preset_kind(task), preset).model_dump(mode="json"),
            {"preset_name": preset, **arguments},
        )
        key = identity_key(identity)
        previous = record.get(task)
        if not retrain and previous and previous.get("identity_key") == key:
            logger.info(
                "%s: store and configuration unchanged since %s version %s: not retraining",
                task,
                previous.get("registered_model"),
                previous.get("version"),
            )
            trained[task] = {**previous, "skipped": "unchanged"}
            continue
        out = train(task=task, subset=subset, preset=preset, catalog=catalog, **arguments)
        trained[task] = {
            "identity_key": key,
            "registered_model": out["registered_model"],
            "version": out["version"],
            "run_id": out["run_id"],
            "metrics": out["metrics"],
        }
        record[task] = {k: v for k, v in trained[task].items() if k != "metrics"}
        record_path.write_text(json.dumps(record, indent=2))

    evaluated: dict[str, Any] = {}
    if evaluate_grid:
        retrained = any("skipped" not in v for v in trained.values())
        previous = record.get("evaluation")
        if not retrained and not retrain and previous and Path(previous["report"]).is_file():
            logger.info("nothing retrained: the last report stands, %s", previous["report"])
            evaluated = {**previous, "skipped": "unchanged"}
        else:
            from flows.evaluate import evaluate

            out = evaluate(
                subset=subset,
                preset=preset,
                n_values=grid_n_values,
                k_values=grid_k_values,
                seeds=[seed],
                baselines=grid_baselines,
                n_baseline_train=grid_baseline_train,
                catalog=catalog,
            )
            evaluated = {"parent_run_id": out["parent_run_id"], "report": out["report"]}
            record["evaluation"] = evaluated
            record_path.write_text(json.dumps(record, indent=2))

    logger.info(
        "done: store %s; MLflow %s; models %s; report %s",
        simulated["store"],
        settings.tracking_uri(),
        {t: (v.get("registered_model"), v.get("version")) for t, v in trained.items()},
        evaluated.get("report"),
    )
    return {"fetch": fetched, "simulate": simulated, "train": trained, "evaluate": evaluated}


if __name__ == "__main__":
    pipeline()
