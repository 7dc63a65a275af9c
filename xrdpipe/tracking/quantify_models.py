"""MLflow runs and the registry entry of ``xrdpipe quantify``'s ensemble model.

One parent run per ensemble (experiment ``xrdpipe/quantify``) with one child run per member
(its seed, preset, per-epoch metrics, ``config.yaml``); the parent logs the ensemble folder
(every member's checkpoint and ``quantify_model.json``) as the artifact ``ensemble`` and
registers it as one model version whose tag ``fingerprint`` is the key a later call looks
up (:func:`find_ensemble_version`). Records values, trains nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from xrdpipe.tracking.registry import ModelLookupError, registered_versions
from xrdpipe.tracking.runs import (
    CANDIDATE_ALIAS,
    TrainingRun,
    experiment_name,
    flatten,
    git_commit,
    training_run,
)

QUANTIFY_TASK = "quantify"
"""The experiment ``xrdpipe/quantify`` holds the ensembles' parent and member runs."""
ENSEMBLE_ARTIFACT = "ensemble"
"""The parent run's artifact folder that is registered (checkpoints and description)."""
FINGERPRINT_TAG = "fingerprint"
"""Version tag: the model's key (phase set, instrument/profile, preset, members)."""


def quantify_model_name(phase_set: str) -> str:
    """The registered model of a phase set's ensemble: ``xrdpipe-quantify-<phase set>``."""
    return f"xrdpipe-quantify-{phase_set}"


@contextmanager
def ensemble_run(
    run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
) -> Iterator[TrainingRun]:
    """The parent run of an ensemble (children: :func:`log_member`)."""
    with training_run(QUANTIFY_TASK, run_name=run_name, params=params, tags=tags) as run:
        yield run


def log_member(
    parent: TrainingRun,
    run_name: str,
    config: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, float],
) -> str:
    """One member as a child run of ``parent``: its config, every epoch, its metrics.

    Returns:
        The child run's id.
    """
    client = MlflowClient()
    tags = {"mlflow.parentRunId": parent.run_id, "xrdpipe.task": QUANTIFY_TASK}
    commit = git_commit()
    if commit:
        tags["xrdpipe.git_commit"] = commit
    run = client.create_run(parent.experiment_id, run_name=run_name, tags=tags)
    child = TrainingRun(run.info.run_id, parent.experiment_id, QUANTIFY_TASK)
    try:
        for key, value in flatten(dict(config)).items():
            client.log_param(child.run_id, key, value)
        for record in history:
            child.log_epoch(record)
        for key, value in metrics.items():
            client.log_metric(child.run_id, key, float(value))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "config.yaml"
            path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
            client.log_artifact(child.run_id, str(path))
    finally:
        client.set_terminated(child.run_id)
    return child.run_id


def register_ensemble(
    parent: TrainingRun,
    folder: Path,
    name: str,
    tags: Mapping[str, str],
    description: str,
) -> str:
    """Log ``folder`` as the parent's ``ensemble`` artifact and register it as one version.

    The version gets ``tags`` (``fingerprint`` among them) and the alias ``candidate``.

    Returns:
        The new version number.
    """
    client = MlflowClient()
    client.log_artifacts(parent.run_id, str(folder), artifact_path=ENSEMBLE_ARTIFACT)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description=description)
    source = f"{client.get_run(parent.run_id).info.artifact_uri}/{ENSEMBLE_ARTIFACT}"
    version = client.create_model_version(
        name, source, run_id=parent.run_id, tags={k: str(v) for k, v in tags.items()}
    )
    number = str(version.version)
    client.set_registered_model_alias(name, CANDIDATE_ALIAS, number)
    client.set_tag(parent.run_id, "xrdpipe.registered_model", name)
    client.set_tag(parent.run_id, "xrdpipe.model_version", number)
    return number


def find_ensemble_version(name: str, fingerprint: str) -> tuple[str, str] | None:
    """The newest version of ``name`` tagged with ``fingerprint``: ``(version, run_id)``."""
    try:
        versions = registered_versions(name)
    except ModelLookupError:
        return None
    for version in versions:  # newest first
        if version.tags.get(FINGERPRINT_TAG) == fingerprint:
            return version.version, version.run_id
    return None


def download_ensemble(run_id: str, destination: Path) -> Path:
    """The ``ensemble`` folder of a parent run, downloaded under ``destination``.

    Raises:
        ModelLookupError: the run has no such artifact.
    """
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=ENSEMBLE_ARTIFACT, dst_path=str(destination)
        )
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise ModelLookupError(f"run {run_id} has no {ENSEMBLE_ARTIFACT}/ artifact: {exc}") from exc
    return Path(path)


def quantify_experiment() -> str:
    """The experiment's name, ``xrdpipe/quantify``."""
    return experiment_name(QUANTIFY_TASK)


def log_metrics(metrics: Mapping[str, float]) -> None:
    """Log summary metrics to the active (parent) run."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
