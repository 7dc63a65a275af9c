"""The MLflow seam: the only module of xrdpipe that imports mlflow.

One experiment per task (``xrdpipe/phase-fractions``, ``xrdpipe/lattice-system``, ...), one
run per training: params = the full resolved configuration flattened (subset, preset, model,
mixtures, training loop), tags = store fingerprint, manifest and test-set hashes, git commit;
per-epoch metrics from the training loop's callback; artifacts (learning curves, confusion
matrix or predicted-vs-true fractions, ``config.yaml``, ``results.json``, the safetensors
checkpoint); the model logged with ``mlflow.pytorch.log_model`` in torch.export (``pt2``)
format with an input example, a signature and explicit pip requirements, registered (one
registered model per task and material set) with the alias ``candidate``.

The training code never sees MLflow: :func:`track_training` starts a run, hands an epoch
callback to the caller's ``fit`` function and logs what it returns. SQLite tracking stores
must be written from one process at a time (parallel writers hit "database is locked"): log
from the process that trains, or use an MLflow server.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
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

from xrdpipe.errors import XrdpipeError

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
    repo = repo or Path(__file__).resolve().parents[1]
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
    """What :func:`track_training` returns besides the task's result."""

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


def load_registered(name: str, alias: str = CANDIDATE_ALIAS) -> nn.Module:
    """The registered model ``name@alias`` as a torch module (outputs probabilities)."""
    return mlflow.pytorch.load_model(f"models:/{name}@{alias}")


# --- plots ---------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, path: Path
) -> Path:
    """Train/validation loss and a validation metric per epoch, one line per history."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, history in histories.items():
        epochs = [r["epoch"] for r in history]
        axes[0].plot(epochs, [r["train_loss"] for r in history], label=f"{label} train")
        axes[0].plot(epochs, [r["val_loss"] for r in history], "--", label=f"{label} val")
        axes[1].plot(epochs, [r["metrics"].get(metric, math.nan) for r in history], label=label)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel=f"validation {metric}", title=metric)
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str, path: Path):
    """Row-normalised confusion matrix with counts (rows: true class)."""
    plt = _pyplot()
    n = len(class_names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = confusion.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(confusion / rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_fractions(
    predictions: np.ndarray, targets: np.ndarray, labels: Sequence[str], title: str, path: Path
) -> Path:
    """Predicted vs true phase fraction of every (test mixture, material), one colour each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for j, label in enumerate(labels):
        ax.scatter(targets[:, j], predictions[:, j], s=4, alpha=0.4, label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="true fraction", ylabel="predicted fraction", title=title
    )
    if len(labels) <= 12:
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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


def _log_checkpoint(model: nn.Module, config: Mapping[str, Any], metadata: dict, folder: Path):
    from xrdpipe.training.checkpoints import save_checkpoint

    path = save_checkpoint(
        folder / "checkpoint" / "model", model, train_config=config.get("train"), metadata=metadata
    )
    mlflow.log_artifacts(str(path.parent), artifact_path="checkpoint")


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
        labels = [f"{i} {f}" for i, f in zip(result.materials, result.formulas, strict=True)]
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
            {"materials": result.materials, "formulas": result.formulas},
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
            plot_confusion(
                v.confusion,
                result.class_names,
                f"{result.target} ({v.variant}): accuracy {v.accuracy:.3f}",
                folder / name,
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
            {"class_names": result.class_names, "variant": result.primary.variant},
            folder,
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


def track_training(
    task: str,
    fit: Callable[[list[Callable[[Mapping[str, Any]], None]]], Any],
    *,
    registered_name: str | None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> tuple[Any, TrackedModel]:
    """Run ``fit(callbacks)`` inside a new run of the task's experiment and log its result.

    Args:
        task: ``phase-fractions`` or a classifier task.
        fit: trains and returns a ``PhaseFractionResult`` or ``ClassifierResult``; it must
            pass the given callbacks to the training loop.
        registered_name: where the model is registered (``None``: not registered).
        params: configuration known up front (subset, preset, task arguments).
        tags: extra run tags.
        run_name: the run's name.

    Returns:
        ``(result, TrackedModel)``.
    """
    with training_run(task, run_name=run_name, params=params, tags=tags) as run:
        result = fit([run.log_epoch])
        if task == "phase-fractions":
            tracked = log_phase_fractions(result, registered_name)
            if registered_name is not None and tracked.version is not None:
                promote_if_better(registered_name, tracked.version)
        else:
            tracked = log_classifier(result, registered_name)
        if registered_name is not None:
            mlflow.set_tags(
                {
                    "xrdpipe.registered_model": registered_name,
                    "xrdpipe.model_version": str(tracked.version),
                }
            )
    return result, tracked


# --- promotion -----------------------------------------------------------------------------

CHAMPION_ALIAS = "champion"
"""Alias of the best version of a registered model on its test set (``xrdpipe predict``)."""
PROMOTION_STANDARD_ERRORS = 2.0
"""A candidate must beat the champion by more than this many standard errors."""


@dataclass(frozen=True)
class Promotion:
    """The outcome of comparing a new version with its registered model's champion."""

    name: str
    version: str
    promoted: bool
    reason: str
    candidate_value: float
    champion_version: str | None = None
    champion_value: float | None = None
    margin: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return dict(self.__dict__)


def promote_if_better(
    name: str,
    version: str,
    *,
    metric: str = "test_tvd_mean",
    sem_tag: str = "test_tvd_sem",
    lower_is_better: bool = True,
) -> Promotion:
    """Move the alias ``champion`` to ``version`` if it beats the champion on the same test set.

    The rule: no champion yet, or the same ``test_set_sha256`` version tag and a better
    ``metric`` (a version tag) by more than :data:`PROMOTION_STANDARD_ERRORS` standard errors
    of the difference, ``sqrt(sem_candidate^2 + sem_champion^2)`` (``sem_tag`` version tags).
    A champion scored on other test mixtures is never replaced silently: the outcome says so.
    The outcome is logged to the active run (tags and ``promotion.json``) when there is one.
    """
    client = MlflowClient()
    candidate = client.get_model_version(name, version)
    tags = dict(candidate.tags or {})
    value = float(tags[metric])
    sem = float(tags.get(sem_tag, 0.0))
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None:
        outcome = Promotion(name, version, True, "no champion yet", value)
    elif str(champion.version) == str(version):
        outcome = Promotion(name, version, True, "already champion", value, str(version), value)
    else:
        ctags = dict(champion.tags or {})
        cvalue = float(ctags.get(metric, "nan"))
        csem = float(ctags.get(sem_tag, 0.0))
        margin = PROMOTION_STANDARD_ERRORS * math.sqrt(sem**2 + csem**2)
        gain = (cvalue - value) if lower_is_better else (value - cvalue)
        if ctags.get("test_set_sha256") != tags.get("test_set_sha256"):
            outcome = Promotion(
                name, version, False, "champion was scored on other test mixtures",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
        elif gain > margin:
            outcome = Promotion(
                name, version, True, f"better by {gain:.4g} > {margin:.4g} (2 SE)",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
        else:
            outcome = Promotion(
                name, version, False, f"not better by more than 2 SE ({gain:.4g} <= {margin:.4g})",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
    if outcome.promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    if mlflow.active_run() is not None:
        mlflow.set_tags(
            {"xrdpipe.promoted": str(outcome.promoted), "xrdpipe.promotion": outcome.reason}
        )
        mlflow.log_dict(outcome.as_dict(), "promotion.json")
    return outcome


# --- the N/K grid (evaluation) -------------------------------------------------------------

GRID_EXPERIMENT = "nk-grid"
CLASSIFICATION_EXPERIMENT = "classification-cv"


def start_grid_run(
    subset: str,
    preset_name: str,
    spec: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    experiment: str = GRID_EXPERIMENT,
) -> str:
    """Open (and leave open for :func:`log_grid_cell`) the parent run of a grid; its id.

    ``experiment`` (``nk-grid`` by default; ``classification-cv`` for paper 000's tables
    alone) names the experiment and the ``xrdpipe.task`` tag.
    """
    experiment_id = _experiment_id(experiment_name(experiment))
    tags = {
        "xrdpipe.task": experiment,
        "xrdpipe.subset": subset,
        "xrdpipe.preset": preset_name,
    }
    commit = git_commit()
    if commit:
        tags["xrdpipe.git_commit"] = commit
    client = MlflowClient()
    suffix = "grid" if experiment == GRID_EXPERIMENT else experiment
    run = client.create_run(experiment_id, run_name=f"{subset}-{preset_name}-{suffix}", tags=tags)
    params = flatten(
        {"subset": subset, "preset_name": preset_name, "grid": dict(spec), **(extra or {})}
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def log_grid_cell(
    parent_run_id: str,
    cell: Any,
    subset: str,
    preset_name: str,
    *,
    register: bool = True,
    promote: bool = True,
) -> dict[str, Any]:
    """Log one finished grid cell as a child run of the grid (from the parent process).

    The child run holds the cell's full config, its per-epoch history (replayed with the
    epoch as step), the CNN's and every baseline's test metrics, the learning curve and
    fraction scatter plots, the model (registered as ``...-N<n>-K<k>``, alias ``candidate``)
    and the promotion outcome. The parent gets ``<method>_tvd_N<n>_K<k>_s<seed>`` metrics.

    Returns:
        ``{"run_id", "registered_name", "version", "promotion"}``.
    """
    result = cell.phase
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    label = f"N{cell.n_materials}-K{cell.max_phases}-s{cell.seed}"
    name = (
        registered_model_name("phase-fractions", subset, cell.n_materials, None, cell.max_phases)
        if register
        else None
    )
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=label,
        nested=False,
        tags={
            "mlflow.parentRunId": parent_run_id,
            "xrdpipe.task": "phase-fractions",
            "xrdpipe.grid_cell": label,
            "xrdpipe.subset": subset,
            "xrdpipe.preset": preset_name,
        },
    ):
        for record in result.train.history:
            step = int(record.get("epoch", 0))
            values = {
                k: v
                for k, v in ((k, _metric_value(v)) for k, v in record.items())
                if v is not None and k != "epoch"
            }
            mlflow.log_metrics(values, step=step)
        for b in cell.baselines:
            mlflow.log_metrics({f"baseline.{b.name}.{k}": v for k, v in b.metrics().items()})
            mlflow.log_params({f"baseline.{b.name}.{k}": str(v)[:500] for k, v in b.params.items()})
        tracked = log_phase_fractions(result, name)
        promotion = None
        if register and promote and tracked.version is not None:
            promotion = promote_if_better(name, tracked.version)
        run_id = tracked.run_id
    client = MlflowClient()
    suffix = f"N{cell.n_materials}_K{cell.max_phases}_s{cell.seed}"
    client.log_metric(parent_run_id, f"cnn_tvd_{suffix}", result.test_tvd_mean)
    for b in cell.baselines:
        client.log_metric(parent_run_id, f"{b.name}_tvd_{suffix}", b.tvd_mean)
    return {
        "run_id": run_id,
        "registered_name": name,
        "version": tracked.version,
        "promotion": None if promotion is None else promotion.as_dict(),
    }


def finish_grid_run(
    parent_run_id: str,
    artifacts: Sequence[str | Path],
    metrics: Mapping[str, float] | None = None,
    status: str = "FINISHED",
) -> None:
    """Log the grid's table, plots and report to the parent run and end it."""
    client = MlflowClient()
    for path in artifacts:
        client.log_artifact(parent_run_id, str(path))
    for key, value in (metrics or {}).items():
        client.log_metric(parent_run_id, key, float(value))
    client.set_terminated(parent_run_id, status=status)


def download_latest_report(destination: str | Path, experiment: str = GRID_EXPERIMENT) -> Path:
    """Fetch ``report.html`` of the newest finished evaluation run into ``destination``.

    Raises:
        XrdpipeError: no evaluation run with a report in the tracking store.
    """
    found = mlflow.get_experiment_by_name(experiment_name(experiment))
    if found is not None:
        runs = MlflowClient().search_runs(
            [found.experiment_id],
            filter_string="tags.xrdpipe.task = 'nk-grid' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for run in runs:
            names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
            if "report.html" in names:
                Path(destination).mkdir(parents=True, exist_ok=True)
                local = mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path="report.html", dst_path=str(destination)
                )
                return Path(local)
    raise XrdpipeError(
        f"no finished evaluation run with a report in {mlflow.get_tracking_uri()}; "
        "run `xrdpipe evaluate` first"
    )


def run_name(task: str, subset: str, preset: str, n_materials: int, max_phases: int, seed: int):
    """A readable run name, e.g. ``demo-cpu-N5-K3-s0`` or ``demo-cpu-strain-s0``."""
    nk = f"-N{n_materials}-K{max_phases}" if task == "phase-fractions" else ""
    return f"{subset}-{preset}{nk}-s{seed}"


def train_task(
    task: str,
    subset: str,
    subset_config: Any,
    preset_name: str,
    preset: Any,
    store_path: str | Path,
    *,
    n_materials: int = 5,
    max_phases: int = 3,
    seed: int = 0,
    protocol: str = "strain",
    device: str | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[Mapping[str, Any]], Any]] = (),
    register: bool = True,
) -> tuple[Any, TrackedModel]:
    """Train a task of ``xrdpipe.stages.train.TASKS`` and track it (the CLI and flow call this).

    Logs the task arguments and the preset before training, every epoch during it, and the
    result, plots, checkpoint and model after; registers the model as
    :func:`registered_model_name` with the alias ``candidate``. Call :func:`configure` first.

    Returns:
        ``(PhaseFractionResult | ClassifierResult, TrackedModel)``.
    """
    from xrdpipe.stages import train as tasks

    args: dict[str, Any] = {
        "task": task,
        "subset_name": subset,
        "preset_name": preset_name,
        "seed": seed,
    }
    if task == "phase-fractions":
        args |= {"n_materials": n_materials, "max_phases": max_phases}
    else:
        args["protocol"] = protocol
    params = {"args": args, "preset": preset.model_dump(mode="json")}
    name = (
        registered_model_name(
            task, subset, n_materials, protocol, max_phases if task == "phase-fractions" else None
        )
        if register
        else None
    )

    def fit(run_callbacks: list) -> Any:
        return tasks.run_task(
            task,
            store_path,
            subset_config,
            preset,
            preset_name=preset_name,
            n_materials=n_materials,
            max_phases=max_phases,
            seed=seed,
            protocol=protocol,  # type: ignore[arg-type]
            device=device,
            callbacks=[*run_callbacks, *callbacks],
            progress=progress,
        )

    return track_training(
        task,
        fit,
        registered_name=name,
        params=params,
        tags={"xrdpipe.subset": subset, "xrdpipe.preset": preset_name},
        run_name=run_name(task, subset, preset_name, n_materials, max_phases, seed),
    )


# --- reading registered models back (``xrdpipe predict``) ----------------------------------


class ModelLookupError(XrdpipeError):
    """A registered model, alias, version or run artifact is not in the tracking store."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model, as the registry describes it.

    Attributes:
        name: the registered model.
        version: its version number, as a string.
        run_id: the run that logged it.
        tags: the version's tags (task, seed, materials or class names, ...).
        aliases: aliases pointing at it (``champion``, ``candidate``, ...).
        seed: the training seed (version tag ``seed``, else the run param ``args.seed``).
    """

    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    seed: str | None


def _describe(client: MlflowClient, mv: Any, aliases: tuple[str, ...]) -> RegisteredVersion:
    tags = dict(mv.tags or {})
    seed = tags.get("seed")
    if seed is None and mv.run_id:
        try:
            seed = client.get_run(mv.run_id).data.params.get("args.seed")
        except mlflow.exceptions.MlflowException:
            seed = None
    return RegisteredVersion(mv.name, str(mv.version), mv.run_id, tags, aliases, seed)


def registered_versions(name: str) -> list[RegisteredVersion]:
    """Every version of a registered model, newest first.

    Raises:
        ModelLookupError: no registered model of that name (lists the known names).
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        known = sorted(m.name for m in client.search_registered_models())
        raise ModelLookupError(
            f"no registered model {name!r} in {mlflow.get_tracking_uri()}; registered: {known}"
        ) from exc
    aliases: dict[str, list[str]] = {}
    for alias, number in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(number), []).append(alias)
    found = client.search_model_versions(f"name = '{name}'")
    return [
        _describe(client, mv, tuple(sorted(aliases.get(str(mv.version), ()))))
        for mv in sorted(found, key=lambda m: -int(m.version))
    ]


def registered_version(
    name: str, alias: str | None = None, version: str | int | None = None
) -> RegisteredVersion | None:
    """``name@alias`` or ``name/version``; ``None`` if that alias or version does not exist.

    Raises:
        ModelLookupError: no registered model of that name.
    """
    versions = registered_versions(name)
    if version is not None:
        return next((v for v in versions if v.version == str(version)), None)
    return next((v for v in versions if alias in v.aliases), None)


def load_version(name: str, version: str | int) -> nn.Module:
    """The logged (pt2, probability-output) model of ``name`` version ``version``."""
    try:
        return mlflow.pytorch.load_model(f"models:/{name}/{version}")
    except mlflow.exceptions.MlflowException as exc:
        raise ModelLookupError(f"cannot load model {name} version {version}: {exc}") from exc


def model_metadata(run_id: str) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """What a training run logged beside its model: ``(config, checkpoint_model, sidecar)``.

    ``config`` is ``config.yaml`` (subset with the profile grid and wavelength, data with class
    names or materials); the checkpoint (``checkpoint/model.safetensors``) rebuilds the full
    network (the a-CNN's CAM needs its layers); ``sidecar["metadata"]`` holds class names or
    materials and formulas.

    Raises:
        ModelLookupError: the run lacks these artifacts.
    """
    from xrdpipe.training.checkpoints import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="config.yaml", dst_path=tmp
            )
            folder = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="checkpoint", dst_path=tmp
            )
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise ModelLookupError(
                f"run {run_id} has no config.yaml or checkpoint/ artifact: {exc}"
            ) from exc
        config = yaml.safe_load(Path(config_path).read_text())
        model, sidecar = load_checkpoint(Path(folder) / "model")
    return config, model, sidecar
