"""The classifier-evaluation stage: paper 000's cross-validated comparison on a store.

:func:`run_classification_evaluation` reads a subset's rendered single-phase profiles
(:func:`load_cv_profiles`), labels them, and runs
:func:`~xrdpipe.evaluation.cv.cross_validate_classifiers` under each protocol; the
orchestration of :mod:`xrdpipe.stages.evaluate` (the evaluate flow and the CLI) calls it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdpipe import store
from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.errors import ConfigError, StoreError
from xrdpipe.evaluation.cv import METHODS, CVResult, cross_validate_classifiers
from xrdpipe.evaluation.synthetic_plus_material import synthetic_plus_material
from xrdpipe.evaluation.synthetic_to_real import (
    MAX_TRAINING_PATTERNS,
    structures_of,
    synthetic_to_real,
    synthetic_training_set,
)
from xrdpipe.evaluation.tables import classification_table
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.datasets import load_profiles
from xrdpipe.store import store_identity
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.labels import Target, TaskError, class_order
from xrdpipe.training.labels import labels as target_labels
from xrdpipe.training.loop import Callback
from xrdpipe.training.splits import PROTOCOLS, Protocol


def load_cv_profiles(
    store_path: store.StorePath,
    profile: ProfileConfig,
    max_strains_per_material: int | None = None,
    splits: Sequence[str] = ("train", "test"),
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Stored profiles of the first ``max_strains_per_material`` strains of ``splits``.

    Strain conditions of ``splits`` in that order, read lazily so that only those are loaded.
    :func:`~xrdpipe.patterns.datasets.load_profiles` as float32 (profiles and peaks
    completed, not quarantined); an unknown split is a ConfigError.

    Returns:
        ``(M, S, n_points)`` float32 profiles, the materials, the two-theta grid (degrees).
    """
    try:
        profiles, materials, grid = load_profiles(
            store_path, profile, splits, max_strains_per_material
        )
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc
    return np.asarray(profiles, np.float32), materials, grid


@dataclass
class ClassificationEvaluation:
    """What :func:`run_classification_evaluation` returns.

    Attributes:
        results: protocol -> :class:`~xrdpipe.evaluation.cv.CVResult`.
        table: :func:`~xrdpipe.evaluation.tables.classification_table` of both (strings, with
            the paper's figures).
        class_names: the classes.
        material_ids: COD ids of the evaluated materials (profile row order).
        excluded: classes dropped for too few materials, and how many materials they held.
        config: the resolved configuration (subset, preset, target, sizes, store identity).
        two_theta: the grid, degrees.
        plots: written figures (name -> path), when ``plot_dir`` was given.
        wall_s: wall time.
    """

    results: dict[str, CVResult]
    table: pd.DataFrame
    class_names: list[str]
    material_ids: list[str]
    excluded: dict[str, Any]
    config: dict[str, Any]
    two_theta: np.ndarray
    plots: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0

    def metrics(self) -> dict[str, float]:
        """``<protocol>/<method>/<metric>_{mean,std}`` of every result."""
        return {f"{p}/{k}": v for p, r in self.results.items() for k, v in r.metrics().items()}


def _subsample_materials(y_mat: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` material indices, per class in proportion (at least one each), sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_mat, return_counts=True)
    quota = np.maximum(1, np.floor(counts * n / len(y_mat)).astype(int))
    chosen = [
        rng.permutation(np.flatnonzero(y_mat == c))[:q] for c, q in zip(classes, quota, strict=True)
    ]
    picked = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(y_mat)), picked)
    extra = rng.permutation(rest)[: max(0, n - len(picked))]
    return np.sort(np.concatenate([picked, extra])[:n])


SYNTHETIC_PROTOCOLS = ("synthetic-to-real", "synthetic+material")
"""The columns trained on a synthetic manifest (issue 18)."""


def check_synthetic_options(
    synthetic_manifest: str | Path | None,
    synthetic_patterns: int,
    synthetic_draws: int,
    synthetic_protocols: Sequence[str] = SYNTHETIC_PROTOCOLS[:1],
) -> None:
    """ConfigError naming the option when a synthetic-to-real setting is out of range."""
    unknown = [p for p in synthetic_protocols if p not in SYNTHETIC_PROTOCOLS]
    if unknown or not synthetic_protocols:
        raise ConfigError(
            f"synthetic_protocols {unknown or list(synthetic_protocols)} not allowed; use one "
            f"or both of {list(SYNTHETIC_PROTOCOLS)}"
        )
    if synthetic_manifest is not None and not Path(synthetic_manifest).is_file():
        raise ConfigError(
            f"synthetic_manifest {str(synthetic_manifest)!r} is not a file; give a synthetic "
            "store's manifest.parquet (e.g. <data_dir>/synthetic/manifest.parquet)"
        )
    if not 1 <= synthetic_draws <= 100:
        raise ConfigError(f"synthetic_draws must be 1-100, got {synthetic_draws}")
    if not 2 * synthetic_draws <= synthetic_patterns <= MAX_TRAINING_PATTERNS:
        raise ConfigError(
            f"synthetic_patterns must be {2 * synthetic_draws}-{MAX_TRAINING_PATTERNS} "
            f"(structures x synthetic_draws {synthetic_draws}), got {synthetic_patterns}"
        )


def synthetic_columns(
    synthetic_manifest: Path,
    manifest: Path,
    material_ids: Sequence[str],
    y_mat: np.ndarray,
    class_names: Sequence[str],
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    target: Target,
    *,
    methods: Sequence[str],
    protocols: Sequence[str],
    n_folds: int,
    n_patterns: int,
    draws: int,
    test_draws: int,
    minutes: float | None,
    seed: int,
    n_bins: int,
    device: str | None,
    n_jobs: int | None,
    callbacks: Sequence[Callback],
    progress: bool,
) -> CVResult:
    """The ``synthetic-to-real`` (and ``synthetic+material``) columns on these materials.

    Reads the synthetic manifest (labels by ``target`` as the store's materials are
    labelled, :func:`~xrdpipe.evaluation.synthetic_to_real.synthetic_training_set`) and the
    subset's manifest (the structures of ``material_ids``), and runs on the subset's grid
    :func:`~xrdpipe.evaluation.synthetic_to_real.synthetic_to_real` with the a-CNN capped at
    ``minutes`` (``None``: the preset's epochs alone) and
    :func:`~xrdpipe.evaluation.synthetic_plus_material.synthetic_plus_material` with the
    preset's own cap per fold. Both use one synthetic set: ``n_patterns // draws`` structures,
    less the real structures when ``synthetic+material`` runs (their renders count too).
    """
    synthetic = pd.read_parquet(synthetic_manifest)
    if target not in synthetic.columns and target != "space_group":
        raise ConfigError(
            f"target {target!r} is not a column of synthetic_manifest {str(synthetic_manifest)!r}"
        )
    n_real = len(material_ids) if "synthetic+material" in protocols else 0
    train_rows, val_rows, y_syn = synthetic_training_set(
        target_labels(synthetic, target, synthetic_manifest).tolist(),
        class_names,
        n_patterns // draws - n_real,
        preset,
        seed,
    )
    if not manifest.is_file():
        raise ConfigError(f"the synthetic-to-real test needs the subset's manifest {manifest}")
    real = pd.read_parquet(manifest)
    real["cod_id"] = real["cod_id"].astype(str)
    where = {mid: i for i, mid in enumerate(real["cod_id"])}
    missing = [m for m in material_ids if m not in where]
    if missing:
        raise ConfigError(f"materials {missing[:5]} are not in the manifest {manifest}")
    timed = preset.model_copy(
        update={"train": preset.train.model_copy(update={"max_minutes": minutes})}
    )
    sets = (
        structures_of(synthetic, train_rows),
        y_syn[train_rows],
        structures_of(synthetic, val_rows),
        y_syn[val_rows],
        structures_of(real, [where[m] for m in material_ids]),
        y_mat,
        class_names,
    )
    common: dict[str, Any] = {
        "profile": subset_config.profile,
        "methods": methods,
        "draws": draws,
        "test_draws": test_draws,
        "seed": seed,
        "n_bins": n_bins,
        "target": target,
        "device": device,
        "n_jobs": n_jobs,
        "progress": progress,
    }
    out: dict[str, CVResult] = {}
    for protocol in protocols:
        prefixed = with_prefix(callbacks, f"{protocol}/")
        if protocol == "synthetic-to-real":
            out[protocol] = synthetic_to_real(*sets, preset=timed, callbacks=prefixed, **common)
        else:
            out[protocol] = synthetic_plus_material(
                *sets, preset=preset, n_folds=n_folds, callbacks=prefixed, **common
            )
    return out


def run_classification_evaluation(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    target: Target = "lattice_system",
    *,
    protocols: Sequence[Protocol] = PROTOCOLS,
    methods: Sequence[str] = METHODS,
    n_folds: int = 5,
    seed: int | None = None,
    n_bins: int = 450,
    max_strains_per_material: int | None = 40,
    max_materials: int | None = 200,
    device: str | None = None,
    n_jobs: int | None = 1,
    manifest_path: str | Path | None = None,
    synthetic_manifest: str | Path | None = None,
    synthetic_patterns: int = MAX_TRAINING_PATTERNS,
    synthetic_draws: int = 4,
    synthetic_test_draws: int = 10,
    synthetic_minutes: float | None = None,
    synthetic_protocols: Sequence[str] = SYNTHETIC_PROTOCOLS[:1],
    plot_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> ClassificationEvaluation:
    """Paper 000's cross-validated comparison on a subset's store, under each protocol.

    Loads the rendered profiles of the first ``max_strains_per_material`` strain conditions
    (training strains first, then test strains) of up to ``max_materials`` materials (a
    class-proportional seeded sample), labels them by ``target`` (space groups with fewer than
    ``preset.split.min_materials_per_class`` materials are dropped, as in training) and runs
    :func:`~xrdpipe.evaluation.cv.cross_validate_classifiers` for each protocol. With
    ``plot_dir``, writes the pooled confusion matrix of every (protocol, method) and, for the
    first a-CNN method, the class mean and misclassified CAM figures of fold 0
    (:func:`~xrdpipe.evaluation.cv_plots.write_cv_plots`).

    With ``synthetic_manifest``, a third column ``synthetic-to-real``
    (:func:`synthetic_columns`): the same methods trained on synthetic crystals and
    tested on measured-like renders of these materials' structures.

    Args:
        store_path: the subset's ``patterns.zarr``.
        subset_config: the subset (profile grid, seed).
        preset: a-CNN settings of each fold (the catalog's ``cv`` preset: the ``binned``
            variant, at most 45 s a fold).
        target: ``lattice_system``, ``crystal_system``, ``space_group`` or ``dimensionality``.
        protocols: the protocols to run.
        methods: the methods.
        n_folds: folds.
        seed: folds and models (default: the subset's seed).
        n_bins: windows of the classical methods.
        max_strains_per_material: strain conditions per material (``None``: all).
        max_materials: materials (``None``: all).
        device: a-CNN device.
        n_jobs: scikit-learn workers and threads (``None``: every core).
        manifest_path: the manifest (dimensionality labels, the structures of the
            synthetic-to-real test); default beside the store.
        synthetic_manifest: a synthetic store's ``manifest.parquet`` (``None``: no
            synthetic-to-real column).
        synthetic_patterns: at most this many synthetic training patterns (structures x
            ``synthetic_draws``; at most 20,000).
        synthetic_draws: measured-like renders of each synthetic structure.
        synthetic_test_draws: measured-like renders of each real structure.
        synthetic_minutes: the a-CNN's training minutes on the synthetic patterns (default
            ``n_folds`` x the preset's ``max_minutes``: the time of one cross-validated column).
        synthetic_protocols: ``synthetic-to-real`` and/or ``synthetic+material`` (the
            ``material`` folds, each trained on the synthetic patterns plus the other folds'
            real structures, rendered measured-like).
        plot_dir: where figures go (``None``: none).
        callbacks: a-CNN epoch records, prefixed ``<protocol>/<method>/fold<k>/``.
        progress: tqdm bars.

    Raises:
        TaskError: unconstrained-strain store, or fewer than two classes.
        ConfigError: a synthetic option out of range, or a manifest without the structures.
    """
    start = time.perf_counter()
    check_synthetic_options(
        synthetic_manifest, synthetic_patterns, synthetic_draws, synthetic_protocols
    )
    seed = subset_config.seed if seed is None else seed
    identity = store_identity(store_path)
    if identity["strain_mode"] == "unconstrained":
        raise TaskError(
            f"store {store_path} was simulated with strain_mode 'unconstrained': symmetry labels "
            "do not hold for its strained cells; use a subset with strain_mode 'symmetry'"
        )
    profiles, materials, two_theta = load_cv_profiles(
        store_path, subset_config.profile, max_strains_per_material
    )
    manifest = (
        Path(manifest_path) if manifest_path else Path(store_path).parent / "manifest.parquet"
    )
    labels = target_labels(materials, target, manifest)
    excluded: dict[str, Any] = {"classes": [], "materials": 0}
    if target == "space_group":
        counts = labels.value_counts()
        small = counts[counts < preset.split.min_materials_per_class]
        excluded = {"classes": sorted(small.index.tolist(), key=int), "materials": int(small.sum())}
    keep = np.flatnonzero(~labels.isin(excluded["classes"]).to_numpy())
    class_names = class_order(target, labels.iloc[keep].tolist())
    if len(class_names) < 2:
        raise TaskError(f"target {target!r} has {len(class_names)} class(es); need 2")
    index = {c: i for i, c in enumerate(class_names)}
    y_mat = np.array([index[labels.iloc[i]] for i in keep], dtype=np.int64)
    if max_materials is not None and len(keep) > max_materials:
        pick = _subsample_materials(y_mat, max_materials, seed)
        keep, y_mat = keep[pick], y_mat[pick]
    profiles = profiles[keep]
    material_ids = materials["cod_id"].astype(str).to_numpy()[keep].tolist()

    results: dict[str, CVResult] = {}
    for protocol in protocols:
        results[protocol] = cross_validate_classifiers(
            profiles,
            y_mat,
            class_names,
            protocol,
            n_folds=n_folds,
            methods=methods,
            seed=seed,
            preset=preset,
            two_theta=two_theta,
            n_bins=n_bins,
            target=target,
            device=device,
            n_jobs=n_jobs,
            callbacks=with_prefix(callbacks, f"{protocol}/"),
            progress=progress,
        )
    if synthetic_manifest is not None:
        max_minutes = preset.train.max_minutes
        column_minutes = None if max_minutes is None else n_folds * max_minutes
        results |= synthetic_columns(
            Path(synthetic_manifest),
            manifest,
            material_ids,
            y_mat,
            class_names,
            subset_config,
            preset,
            target,
            methods=methods,
            protocols=synthetic_protocols,
            n_folds=n_folds,
            n_patterns=synthetic_patterns,
            draws=synthetic_draws,
            test_draws=synthetic_test_draws,
            minutes=synthetic_minutes if synthetic_minutes is not None else column_minutes,
            seed=seed,
            n_bins=n_bins,
            device=device,
            n_jobs=n_jobs,
            callbacks=callbacks,
            progress=progress,
        )
    plots: dict[str, Path] = {}
    if plot_dir is not None:
        from xrdpipe.evaluation.cv_plots import write_cv_plots

        plots = write_cv_plots(Path(plot_dir), results, profiles, two_theta)
    config = {
        "task": "classification-evaluation",
        "target": target,
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "protocols": list(results),
        "synthetic_manifest": None if synthetic_manifest is None else str(synthetic_manifest),
        "methods": list(methods),
        "n_folds": n_folds,
        "seed": seed,
        "n_bins": n_bins,
        "max_strains_per_material": max_strains_per_material,
        "max_materials": max_materials,
        "n_materials": len(material_ids),
        "n_strains": int(profiles.shape[1]),
        "class_names": class_names,
        "excluded_classes": excluded["classes"],
        "excluded_materials": excluded["materials"],
        "store": identity,
    }
    return ClassificationEvaluation(
        results=results,
        table=classification_table(results),
        class_names=class_names,
        material_ids=material_ids,
        excluded=excluded,
        config=config,
        two_theta=np.asarray(two_theta),
        plots=plots,
        wall_s=time.perf_counter() - start,
    )
