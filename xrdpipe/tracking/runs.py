"""MLflow training runs: configuration, experiments, one run per training, model logging.

One experiment per task (``xrdpipe/phase-fractions``, ``xrdpipe/lattice-system``, ...), one
run per training: params = the full resolved configuration flattened (subset, preset, model,
mixtures, training loop), tags = store fingerprint, manifest and test-set hashes, git commit;
per-epoch metrics from the training loop's callback (:meth:`TrainingRun.log_epoch`);
artifacts (learning curves, confusion matrix or predicted-vs-true fractions, ``config.yaml``,
``results.json``, the safetensors checkpoint); the model logged with
``mlflow.pytorch.log_model`` in torch.export (``pt2``) format with an input example, a
signature and explicit pip requirements, registered (one registered model per task and
material set) with the alias ``candidate``.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import torch
import yaml
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from torch import nn

from xrdpipe.evaluation.plots import plot_confusion_matrix, plot_fractions, plot_learning_curves
from xrdpipe.models.checkpoints import MIXTURE_DETECTOR_ROLE, companion_stem, save_checkpoint

CANDIDATE_ALIAS = "candidate"
"""Alias set on every newly registered model version (promotion moves other aliases)."""
EXPERIMENT_PREFIX = "xrdpipe/"
MAX_PARAM_LENGTH = 6000
"""MLflow's limit on a param value; longer values are cut (config.yaml keeps them whole)."""
MODEL_FORMAT = "pt2"
"""torch.export format: loads without xrdpipe's code and without unpickling; round trips
bit-identically for both models (tested), dynamic batch size."""

_state: dict[str, Any] = {"artifact_root": None}


def configure(tracking_uri: str, artifact_root: str | Path | None = None) -> None:
    """Point MLflow at a tracking store (and where new experiments keep their artifacts).

    Args:
        tracking_uri: e.g. ``sqlite:///data/mlflow.db`` (``Settings.tracking_uri()``) or an
            ``http://`` server.
        artifact_root: folder of new experiments' artifacts; default for a SQLite store:
            ``mlartifacts/`` beside the database file (MLflow's own default would be
            ``./mlruns`` under whatever the current directory is).
    """
    mlflow.set_tracking_uri(tracking_uri)
    if artifact_root is None and tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///") :])  # sqlite:////abs or sqlite:///relative
        db.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = db.resolve().parent / "mlartifacts"
    _state["artifact_root"] = None if artifact_root is None else Path(artifact_root).resolve()


def experiment_name(task: str) -> str:
    """The MLflow experiment of a task, e.g. ``xrdpipe/phase-fractions``."""
    return f"{EXPERIMENT_PREFIX}{task}"


def registered_model_name(
    task: str,
    subset: str,
    n_materials: int | None = None,
    protocol: str | None = None,
    max_phases: int | None = None,
) -> str:
    """One registered model per task and material set.

    ``xrdpipe-phase-fractions-<subset>-N<n>[-K<k>]`` (versions differ in seed and preset;
    with K in the name, every version of a model is scored on the same test mixtures, so
    its ``champion`` is decided on one test set) and ``xrdpipe-<task>-<subset>`` for
    classifiers (``-material`` appended for the material-disjoint protocol).
    """
    if task == "phase-fractions":
        k = "" if max_phases is None else f"-K{max_phases}"
        return f"xrdpipe-phase-fractions-{subset}-N{n_materials}{k}"
    suffix = "" if protocol in (None, "strain") else f"-{protocol}"
    return f"xrdpipe-{task}-{subset}{suffix}"


def _experiment_id(name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = _state["artifact_root"]
    location = None
    if root is not None:
        location = (root / name.replace("/", "_")).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit(repo: Path | None = None) -> str | None:
    """The commit of the source tree (``+dirty`` if it has changes), or None outside git."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts to ``{"a.b.c": "value"}`` strings (lists as JSON, long values cut)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
            continue
        if isinstance(value, (list, tuple, Mapping)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            text = text[: MAX_PARAM_LENGTH - 3] + "..."
        out[name] = text
    return out


def _metric_value(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class TrainingRun:
    """A started MLflow run; :meth:`log_epoch` is the training loop's callback."""

    run_id: str
    experiment_id: str
    task: str

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Log one epoch's record (``xrdpipe.training.train``) as metrics at step = epoch.

        Logs ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``samples_per_s``,
        ``data_time_fraction``, ``epoch_s``; a record's ``prefix`` (e.g. ``paper/`` for a
        second a-CNN variant) is put in front of every name.
        """
        prefix = str(record.get("prefix", ""))
        values = {
            "train_loss": record.get("train_loss"),
            "val_loss": record.get("val_loss"),
            "lr": record.get("lr"),
            "samples_per_s": record.get("samples_per_s"),
            "data_time_fraction": record.get("data_time_fraction"),
            "epoch_s": record.get("epoch_s"),
        }
        for name, value in (record.get("metrics") or {}).items():
            values[f"val_{name}"] = value
        metrics = {
            f"{prefix}{k}": v
            for k, v in ((k, _metric_value(v)) for k, v in values.items())
            if v is not None
        }
        mlflow.log_metrics(metrics, step=int(record.get("epoch", 0)), run_id=self.run_id)

    def __call__(self, record: Mapping[str, Any]) -> None:
        self.log_epoch(record)


@dataclass(frozen=True)
class TrackedModel:
    """What :func:`log_phase_fractions`, :func:`log_classifier` and :func:`log_model` return."""

    run_id: str
    experiment_id: str
    model_uri: str
    registered_name: str | None
    version: str | None
    alias: str | None


@contextmanager
def training_run(
    task: str,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[TrainingRun]:
    """Start a run in the task's experiment, log ``params`` (flattened) and the git commit.

    Args:
        task: ``phase-fractions``, ``lattice-system``, ...
        run_name: the run's name in the UI.
        params: configuration known before training (flattened to dotted names).
        tags: extra tags.

    Yields:
        The :class:`TrainingRun` (its ``log_epoch`` is the loop's callback).
    """
    experiment_id = _experiment_id(experiment_name(task))
    all_tags = {"xrdpipe.task": task, **(tags or {})}
    commit = git_commit()
    if commit:
        all_tags["xrdpipe.git_commit"] = commit
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
        if params:
            mlflow.log_params(flatten(params))
        yield TrainingRun(run.info.run_id, experiment_id, task)


class _Probabilities(nn.Module):
    """The logged model: softmax of the network's logits (class probabilities or fractions)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), dim=-1)


def pip_requirements() -> list[str]:
    """Exact requirements of the logged models (a ``+cpu`` torch needs PyTorch's CPU index)."""
    reqs = [
        f"torch=={torch.__version__}",
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
    ]
    if "+cpu" in torch.__version__:
        reqs.insert(0, "--extra-index-url https://download.pytorch.org/whl/cpu")
    return reqs


def probability_model(model: nn.Module) -> nn.Module:
    """A CPU, eval-mode copy of ``model`` whose output is the softmax (what gets logged)."""
    return _Probabilities(copy.deepcopy(getattr(model, "_orig_mod", model)).cpu()).eval()


def log_model(
    model: nn.Module,
    input_example: np.ndarray,
    registered_name: str | None,
    version_tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> TrackedModel:
    """Log ``softmax(model(x))`` to the active run and register it with the alias ``candidate``.

    Args:
        model: a trained network (logits out).
        input_example: a few input patterns ``(n, n_points)`` float32.
        registered_name: registered model name (``None``: log only).
        version_tags: tags of the new model version (task, metrics, hashes).
        description: the registered model's description (set when it is created).
    """
    wrapped = probability_model(model)
    example = np.ascontiguousarray(input_example, dtype=np.float32)
    with torch.no_grad():
        output = wrapped(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        wrapped,
        name="model",
        input_example=example,
        signature=infer_signature(example, output),
        pip_requirements=pip_requirements(),
        serialization_format=MODEL_FORMAT,
        registered_model_name=registered_name,
    )
    run = mlflow.active_run()
    assert run is not None, "log_model needs an active run"
    version = alias = None
    if registered_name is not None:
        client = MlflowClient()
        version = str(info.registered_model_version)
        client.set_registered_model_alias(registered_name, CANDIDATE_ALIAS, version)
        alias = CANDIDATE_ALIAS
        for key, value in (version_tags or {}).items():
            client.set_model_version_tag(registered_name, version, key, str(value))
        if description and not client.get_registered_model(registered_name).description:
            client.update_registered_model(registered_name, description=description)
    return TrackedModel(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        model_uri=info.model_uri,
        registered_name=registered_name,
        version=version,
        alias=alias,
    )


# --- logging a finished task ---------------------------------------------------------------


def _log_common(result: Any, folder: Path) -> None:
    mlflow.log_params(flatten(result.config))
    (folder / "config.yaml").write_text(yaml.safe_dump(result.config, sort_keys=False))
    mlflow.log_artifact(str(folder / "config.yaml"))
    metrics = {
        k: v
        for k, v in ((k, _metric_value(v)) for k, v in result.metrics().items())
        if v is not None
    }
    mlflow.log_metrics(metrics)
    mlflow.set_tags(
        {
            "xrdpipe.store_fingerprint": result.store["store_fingerprint"],
            "xrdpipe.manifest_sha256": result.store["manifest_sha256"],
            "xrdpipe.strain_mode": result.store["strain_mode"],
        }
    )


def _log_checkpoint(
    model: nn.Module,
    config: Mapping[str, Any],
    metadata: dict,
    folder: Path,
    detector: Any = None,
):
    path = save_checkpoint(
        folder / "checkpoint" / "model", model, train_config=config.get("train"), metadata=metadata
    )
    if detector is not None:  # a classifier's mixture detector travels beside it
        stem = companion_stem(path, MIXTURE_DETECTOR_ROLE)
        save_checkpoint(stem, detector.model, metadata=detector.metadata)
    mlflow.log_artifacts(str(path.parent), artifact_path="checkpoint")


def tag_registered_model(registered_name: str, version: str | None) -> None:
    """Tag the active run with the registered model and version it logged."""
    mlflow.set_tags(
        {
            "xrdpipe.registered_model": registered_name,
            "xrdpipe.model_version": str(version),
        }
    )


def log_phase_fractions(result: Any, registered_name: str | None) -> TrackedModel:
    """Log a :class:`~xrdpipe.training.phase_fractions.PhaseFractionResult` to the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _log_common(result, folder)
        mlflow.set_tag("xrdpipe.test_set_sha256", result.test_set_sha256)
        mlflow.set_tag("xrdpipe.test_set_key", result.test_set_key)
        mlflow.set_tag("xrdpipe.validation_set_sha256", result.validation_set_sha256)
        plot_learning_curves(
            {"phase CNN": result.train.history}, "tvd", folder / "learning_curves.png"
        )
        names = result.config["data"].get("names") or []
        labels = names or [
            f"{i} {f}" for i, f in zip(result.materials, result.formulas, strict=True)
        ]
        plot_fractions(
            result.predictions,
            result.targets,
            labels,
            f"test TVD {result.test_tvd_mean:.3f} +- {result.test_tvd_std:.3f} "
            f"(N={len(labels)}, K={result.config['mixtures']['max_phases']})",
            folder / "fractions_scatter.png",
        )
        summary = {
            "metrics": result.metrics(),
            "materials": result.materials,
            "formulas": result.formulas,
            "test_set_sha256": result.test_set_sha256,
            "validation_set_sha256": result.validation_set_sha256,
            "n_test": result.n_test,
            "stop_reason": result.train.stop_reason,
            "store": result.store,
        }
        (folder / "results.json").write_text(json.dumps(summary, indent=2, default=str))
        for name in ("learning_curves.png", "fractions_scatter.png", "results.json"):
            mlflow.log_artifact(str(folder / name))
        _log_checkpoint(
            result.model,
            result.config,
            {"materials": result.materials, "formulas": result.formulas, "names": names},
            folder,
        )
        data = result.config["data"]
        return log_model(
            result.model,
            result.input_example,
            registered_name,
            version_tags={
                "task": "phase-fractions",
                "max_phases": data["max_phases"],
                "seed": data["seed"],
                "preset": result.config.get("preset_name", ""),
                "test_tvd_mean": f"{result.test_tvd_mean:.6f}",
                "test_tvd_sem": f"{result.test_tvd_std / math.sqrt(max(result.n_test, 1)):.6f}",
                "test_set_sha256": result.test_set_sha256,
                "materials": ",".join(result.materials),
            },
            description=(
                "Paper 002 phase-fraction CNN; input: pattern (n_points) normalised to [0, 1] "
                f"on the subset's grid; output: fractions of {', '.join(labels)}."
            ),
        )


def log_classifier(result: Any, registered_name: str | None) -> TrackedModel:
    """Log a :class:`~xrdpipe.training.classifier.ClassifierResult` to the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _log_common(result, folder)
        plot_learning_curves(
            {v.variant: v.train.history for v in result.variants},
            "accuracy",
            folder / "learning_curves.png",
        )
        names = ["learning_curves.png"]
        for i, v in enumerate(result.variants):
            name = "confusion_matrix.png" if i == 0 else f"confusion_matrix_{v.variant}.png"
            plot_confusion_matrix(
                v.confusion,
                result.class_names,
                folder / name,
                f"{result.target} ({v.variant}): accuracy {v.accuracy:.3f}",
            )
            names.append(name)
        summary = {
            "metrics": result.metrics(),
            "class_names": result.class_names,
            "counts": result.counts,
            "excluded": result.excluded,
            "confusion": {v.variant: v.confusion.tolist() for v in result.variants},
            "stop_reason": {v.variant: v.train.stop_reason for v in result.variants},
            "store": result.store,
        }
        (folder / "results.json").write_text(json.dumps(summary, indent=2, default=str))
        names.append("results.json")
        for name in names:
            mlflow.log_artifact(str(folder / name))
        _log_checkpoint(
            result.model,
            result.config,
            {
                "class_names": result.class_names,
                "variant": result.primary.variant,
                **result.extra.get("checkpoint_metadata", {}),  # measured-like: preprocess
            },
            folder,
            result.extra.get("mixture_detector"),  # a DetectorResult, or None
        )
        return log_model(
            result.model,
            result.input_example,
            registered_name,
            version_tags={
                "task": result.config["task"],
                "protocol": result.protocol,
                "variant": result.primary.variant,
                "test_accuracy": f"{result.primary.accuracy:.4f}",
                "class_names": ",".join(result.class_names),
            },
            description=(
                f"Paper 000 a-CNN ({result.primary.variant}) for {result.target}; input: "
                "pattern (n_points) normalised to max 1; output: probabilities of "
                f"{', '.join(result.class_names)}."
            ),
        )
