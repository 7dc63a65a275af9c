"""The train stage: which task trains which model, with which preset table.

:func:`run_task` dispatches a task of :data:`TASKS` to
:func:`~xrdpipe.training.phase_fractions.train_phase_fractions` or
:func:`~xrdpipe.training.classifier.train_classifier`.
"""

from __future__ import annotations

from collections.abc import Sequence

from xrdpipe import store
from xrdpipe.config import ClassifierPreset, PhaseFractionPreset, SubsetConfig
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
