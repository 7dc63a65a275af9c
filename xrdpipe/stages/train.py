"""The train stage: which task trains which model, with which preset table, tracked in MLflow.

:func:`run_task` dispatches a task of :data:`TASKS` to
:func:`~xrdpipe.training.phase_fractions.train_phase_fractions` or
:func:`~xrdpipe.training.classifier.train_classifier`; :func:`train_task` (what the CLI and
the train flow call) runs it inside a tracking run and logs and registers the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xrdpipe import store, tracking
from xrdpipe.config import ClassifierPreset, PhaseFractionPreset, Settings, SubsetConfig
from xrdpipe.errors import ConfigError
from xrdpipe.training.classifier import ClassifierResult, train_classifier
from xrdpipe.training.labels import CLASSIFIER_TARGETS
from xrdpipe.training.loop import Callback
from xrdpipe.training.phase_fractions import PhaseFractionResult, train_phase_fractions
from xrdpipe.training.splits import Protocol

TASKS = ("phase-fractions", "lattice-system", "crystal-system", "space-group", "dimensionality")
"""Task names of ``xrdpipe train`` and the train flow."""


def preset_kind(task: str) -> str:
    """The catalog's preset table of a task: ``phase_fractions`` or ``classifier``."""
    if task not in TASKS:
        raise ConfigError(f"task {task!r} is not one of {list(TASKS)}")
    return "phase_fractions" if task == "phase-fractions" else "classifier"


def run_task(
    task: str,
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: PhaseFractionPreset | ClassifierPreset,
    *,
    preset_name: str = "",
    n_materials: int = 5,
    max_phases: int = 3,
    seed: int = 0,
    protocol: Protocol = "strain",
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
) -> PhaseFractionResult | ClassifierResult:
    """Run a task of :data:`TASKS`: :func:`train_phase_fractions` or :func:`train_classifier`.

    The result's config records ``preset_name``.
    """
    if preset_kind(task) == "phase_fractions":
        if not isinstance(preset, PhaseFractionPreset):
            raise ConfigError(f"task {task!r} needs a phase_fractions preset, got {preset!r}")
        result: PhaseFractionResult | ClassifierResult = train_phase_fractions(
            store_path,
            subset_config,
            preset,
            n_materials,
            max_phases,
            seed=seed,
            device=device,
            callbacks=callbacks,
            progress=progress,
        )
    else:
        if not isinstance(preset, ClassifierPreset):
            raise ConfigError(f"task {task!r} needs a classifier preset, got {preset!r}")
        result = train_classifier(
            store_path,
            subset_config,
            preset,
            CLASSIFIER_TARGETS[task],  # type: ignore[arg-type]
            protocol,
            seed=seed,
            device=device,
            callbacks=callbacks,
            progress=progress,
        )
    result.config["preset_name"] = preset_name
    return result


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
) -> tuple[Any, tracking.TrackedModel]:
    """Train a task of :data:`TASKS` and track it (the CLI and flow call this).

    Logs the task arguments and the preset before training, every epoch during it, and the
    result, plots, checkpoint and model after; registers the model as
    :func:`~xrdpipe.tracking.registered_model_name` with the alias ``candidate``. Call
    :func:`xrdpipe.tracking.configure` first.

    Returns:
        ``(PhaseFractionResult | ClassifierResult, TrackedModel)``.
    """
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
        tracking.registered_model_name(
            task, subset, n_materials, protocol, max_phases if task == "phase-fractions" else None
        )
        if register
        else None
    )
    with tracking.training_run(
        task,
        run_name=run_name(task, subset, preset_name, n_materials, max_phases, seed),
        params=params,
        tags={"xrdpipe.subset": subset, "xrdpipe.preset": preset_name},
    ) as run:
        result = run_task(
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
            callbacks=[run.log_epoch, *callbacks],
            progress=progress,
        )
        tracked = log_result(task, result, name)
        if name is not None:
            tracking.tag_registered_model(name, tracked.version)
    return result, tracked


def log_result(
    task: str, result: PhaseFractionResult | ClassifierResult, registered_name: str | None
) -> tracking.TrackedModel:
    """Log a finished task to the active run; a new phase-fraction version may be promoted."""
    if task == "phase-fractions":
        tracked = tracking.log_phase_fractions(result, registered_name)
        if registered_name is not None and tracked.version is not None:
            tracking.promote_if_better(registered_name, tracked.version)
        return tracked
    return tracking.log_classifier(result, registered_name)


def train_subset(
    settings: Settings,
    task: str,
    subset: str,
    preset_name: str,
    *,
    catalog: str | Path | None = None,
    **arguments: Any,
) -> tuple[PhaseFractionResult | ClassifierResult, tracking.TrackedModel]:
    """:func:`train_task` on a catalog subset and preset: what the CLI and the train flow call.

    Reads the catalog, configures tracking on the settings' URI and trains on the subset's
    store (which must exist); ``arguments`` are :func:`train_task`'s keywords (``seed``,
    ``n_materials``, ``max_phases``, ``protocol``, ``device``, ``progress``, ``callbacks``).
    """
    from xrdpipe.config import load_catalog

    cat = load_catalog(catalog, settings)
    tracking.configure(settings.tracking_uri())
    preset = cat.preset(preset_kind(task), preset_name)
    store_path = settings.store_path(subset)
    return train_task(
        task, subset, cat.subset(subset), preset_name, preset, store_path, **arguments
    )


def training_record(
    result: PhaseFractionResult | ClassifierResult, tracked: tracking.TrackedModel
) -> dict[str, Any]:
    """What the train flow returns: the run, the registered version and the metrics."""
    return {
        "run_id": tracked.run_id,
        "model_uri": tracked.model_uri,
        "registered_model": tracked.registered_name,
        "version": tracked.version,
        "metrics": result.metrics(),
    }


def describe_training(
    task: str,
    subset: str,
    preset_name: str,
    result: PhaseFractionResult | ClassifierResult,
    tracked: tracking.TrackedModel,
    tracking_uri: str,
) -> str:
    """A few lines for people: the metrics, the materials (phase fractions), the run."""
    lines = [f"  {k}: {v:.4g}" for k, v in result.metrics().items()]
    if isinstance(result, PhaseFractionResult):
        lines.append(f"  materials: {', '.join(result.materials)}")
        lines.append(f"  test set sha256: {result.test_set_sha256}")
    return (
        f"{task} ({subset}, {preset_name}):\n"
        + "\n".join(lines)
        + f"\n  MLflow run {tracked.run_id} ({tracking_uri})"
        + f"\n  registered model {tracked.registered_name} version {tracked.version}"
        + f" @{tracked.alias}"
    )
