"""Paper 000's a-CNN trained on a store's single-phase profiles (crystal system, space group).

:func:`train_classifier` trains each a-CNN variant of a preset (:func:`fit_acnn`) on the
store's pre-rendered single-phase profiles, augmented at tensor level (peak scaling,
elimination, isotropic strain, shift), with the protocol ``strain`` (same materials, held-out
strain conditions: paper 000's setting) or ``material`` (material-disjoint, stratified by
class). A random forest on binned patterns is fitted on the same split as a classical
baseline. Nothing here imports MLflow or Prefect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xrdpipe import store
from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.errors import ConfigError
from xrdpipe.models import ACNN, ACNNConfig, ResNet1D, config_to_dict
from xrdpipe.patterns.augment import augment_profiles
from xrdpipe.patterns.datasets import load_profiles
from xrdpipe.patterns.mixtures import split_train_validation
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.config import TrainConfig, loop_config
from xrdpipe.training.devices import seed_everything
from xrdpipe.training.inference import predict_batched
from xrdpipe.training.labels import CLASSIFIER_TARGETS, Target, TaskError, class_order
from xrdpipe.training.labels import labels as target_labels
from xrdpipe.training.loop import Callback, TrainResult, pick_device, train
from xrdpipe.training.losses import accuracy, classification_loss
from xrdpipe.training.seeds import seed_for
from xrdpipe.training.splits import (
    PROTOCOLS,
    Protocol,
    bin_patterns,
    flatten_strains,
    material_split,
)

TEST_BATCH = 1024
"""Test patterns per inference batch."""


@dataclass
class VariantResult:
    """One a-CNN variant's training and test metrics.

    Attributes:
        variant: ``position_channel`` or ``paper``.
        model: the trained network (best validation weights): an a-CNN, or a 1D ResNet
            when trained on measured-like patterns.
        train: the loop's result.
        accuracy: test accuracy.
        balanced_accuracy: mean per-class recall on the test set.
        macro_f1: macro-averaged F1 over the classes.
        confusion: ``(C, C)`` test confusion matrix (rows true, columns predicted).
        y_pred: test predictions (class indices).
    """

    variant: str
    model: ACNN | ResNet1D
    train: TrainResult
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    confusion: np.ndarray
    y_pred: np.ndarray


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` returns.

    Attributes:
        target: the label (``lattice_system``...).
        protocol: ``strain`` or ``material``.
        class_names: the classes, in output order.
        variants: one :class:`VariantResult` per a-CNN variant, in preset order.
        counts: per-class pattern counts of the ``train``, ``validation`` and ``test`` sets
            and material counts (``materials``).
        excluded: classes dropped (fewer than ``min_materials_per_class`` materials) and
            how many materials they held.
        rf_accuracy: test accuracy of the random forest on binned patterns (nan if none).
        rf_balanced_accuracy: its balanced accuracy.
        y_true: test labels (class indices).
        config: the full resolved configuration.
        input_example: two test patterns ``(2, n_points)`` float32.
        store: store path, fingerprint, manifest hash, strain mode.
        wall_s: wall time of the whole task.
    """

    target: str
    protocol: str
    class_names: list[str]
    variants: list[VariantResult]
    counts: dict[str, dict[str, int]]
    excluded: dict[str, Any]
    rf_accuracy: float
    rf_balanced_accuracy: float
    y_true: np.ndarray
    config: dict[str, Any]
    input_example: np.ndarray
    store: dict[str, Any]
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def primary(self) -> VariantResult:
        """The first variant: the one logged as the model and registered."""
        return self.variants[0]

    @property
    def model(self) -> ACNN | ResNet1D:
        """The primary variant's model."""
        return self.primary.model

    def metrics(self) -> dict[str, float]:
        """Summary metrics: the primary variant's plain, others prefixed ``<variant>/``."""
        out: dict[str, float] = {}
        for i, v in enumerate(self.variants):
            prefix = "" if i == 0 else f"{v.variant}/"
            out[f"{prefix}test_accuracy"] = v.accuracy
            out[f"{prefix}test_balanced_accuracy"] = v.balanced_accuracy
            out[f"{prefix}test_macro_f1"] = v.macro_f1
            out[f"{prefix}best_val_loss"] = v.train.best_val_loss
            out[f"{prefix}best_epoch"] = float(v.train.best_epoch)
            out[f"{prefix}train_wall_s"] = v.train.wall_s
        out["rf_test_accuracy"] = self.rf_accuracy
        out["rf_test_balanced_accuracy"] = self.rf_balanced_accuracy
        out["n_classes"] = float(len(self.class_names))
        out["wall_s"] = self.wall_s
        out.update(self.extra.get("metrics", {}))
        return out


VARIANT_FIELDS: dict[str, dict[str, Any]] = {
    "paper": {"pool_bins": 1},
    "position_channel": {"position_channel": True, "pool_bins": 1},
    "binned": {},
}
"""What each a-CNN variant sets of :class:`ACNNConfig` over the preset's ``model`` fields:
``paper`` pools globally, ``position_channel`` adds the coordinate channel, ``binned`` keeps
the preset's ``pool_bins``."""


def acnn_config(
    variant: str, n_points: int, n_classes: int, preset: ClassifierPreset
) -> ACNNConfig:
    """The a-CNN of one variant (``paper``, ``position_channel`` or ``binned``) for a preset.

    The preset's ``model`` fields pass on by name; the variant then sets its own
    (:data:`VARIANT_FIELDS`).
    """
    fields = preset.model.config_fields() | VARIANT_FIELDS[variant]
    return ACNNConfig(n_points=n_points, n_classes=n_classes, **fields)


def classifier_train_config(preset: ClassifierPreset, seed: int, device: str) -> TrainConfig:
    """The training loop's settings of an a-CNN run under ``preset`` (its ``train`` section)."""
    return loop_config(
        preset.train.config_fields(),
        steps_per_epoch=None,
        seed=seed,
        device=device,
        eval_batch_size=1024,
    )


def profile_batches(
    x: Tensor,
    y: Tensor,
    preset: ClassifierPreset,
    seed: int,
    step_deg: float,
    two_theta_start: float | None = None,
) -> Callable[[int], Iterator[tuple[Tensor, Tensor]]]:
    """Epoch batches of stored profiles for the training loop.

    A fresh seeded permutation per epoch, batches of ``preset.train.batch_size`` (a last
    batch of one is dropped: batch statistics need two) and, with ``preset.data.augment``,
    tensor-level
    augmentation (peak scaling, elimination, isotropic strain, shift: those with a
    probability above 0) and re-normalisation to a maximum of 1. ``x`` and ``y`` live on the
    training device; ``two_theta_start`` (the grid's first point) is needed for the strain.
    """

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator(device=x.device).manual_seed(seed_for(seed, epoch))
        order = torch.randperm(x.shape[0], generator=gen, device=x.device)
        batch_size = preset.train.batch_size
        for i in range(0, order.numel(), batch_size):
            idx = order[i : i + batch_size]
            if idx.numel() < 2:
                continue
            batch = x[idx]
            if preset.data.augment:
                augmentation = preset.data.augmentation
                batch = augment_profiles(batch, augmentation, gen, step_deg, two_theta_start)
                batch = batch / batch.amax(dim=1, keepdim=True).clamp(min=1e-12)
            yield batch, y[idx]

    return batches


def fit_acnn(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    preset: ClassifierPreset,
    *,
    variant: str | None = None,
    step_deg: float = 1.0,
    two_theta_start: float | None = None,
    seed: int = 0,
    batch_seed: int | None = None,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    checkpoint_metadata: dict[str, Any] | None = None,
) -> tuple[ACNN, TrainResult]:
    """Train an a-CNN on arrays with the project's loop (each variant of :func:`train_classifier`).

    Batches of ``preset.train.batch_size`` are drawn in a fresh seeded permutation per epoch
    and, with ``preset.data.augment``, augmented (see :func:`profile_batches`); early stopping
    on ``(x_val, y_val)``; ``preset.train.epochs`` and ``max_minutes`` cap the run.

    Args:
        x_train: ``(n, n_points)`` patterns.
        y_train: ``(n,)`` class indices.
        x_val: validation patterns.
        y_val: their class indices.
        n_classes: outputs of the network.
        preset: training settings.
        variant: ``binned``, ``position_channel`` or ``paper``; default the preset's first.
        step_deg: two-theta step of the grid, degrees (sizes the augmentations' windows).
        two_theta_start: first grid point, degrees (the isotropic-strain augmentation).
        seed: the training loop's seed.
        batch_seed: the batch order's and augmentations' seed (default ``seed``).
        device: overrides ``preset.train.device``.
        callbacks: receive every epoch's record.
        progress: tqdm bar.
        checkpoint_metadata: stored in the loop's checkpoints (task, class names, variant).

    Returns:
        The trained model (best validation weights, on the training device) and the loop's
        result.
    """
    variant = variant or preset.model.variants[0]
    dev = pick_device(device or preset.train.device)
    xt = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)).to(dev)
    yt = torch.from_numpy(np.asarray(y_train, dtype=np.int64)).to(dev)
    validation = (
        torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32)),
        torch.from_numpy(np.asarray(y_val, dtype=np.int64)),
    )

    batch_seed = seed if batch_seed is None else batch_seed
    batches = profile_batches(xt, yt, preset, batch_seed, step_deg, two_theta_start)
    cfg = classifier_train_config(preset, seed, str(dev))
    seed_everything(seed)  # the initial weights follow ``seed``, not the process's history
    model = ACNN(acnn_config(variant, int(x_train.shape[1]), n_classes, preset))
    result = train(
        model,
        batches,
        validation,
        classification_loss(preset.data.loss),
        cfg,
        metric_fns={"accuracy": accuracy},
        callbacks=callbacks,
        progress=progress,
        checkpoint_metadata=checkpoint_metadata,
    )
    model.eval()
    return model, result


def train_classifier(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    target: Target = "lattice_system",
    protocol: Protocol = "strain",
    seed: int = 0,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    manifest_path: str | Path | None = None,
) -> ClassifierResult:
    """Train paper 000's a-CNN (each variant of the preset) on stored single-phase profiles.

    With ``preset.data.patterns: measured_like`` the store's peak lists are rendered through
    the instrument model instead, material-disjoint
    (:func:`xrdpipe.training.measured_like.train_measured_like`; ``protocol`` is ignored).

    Protocols: ``strain`` trains on the training strain conditions of every material
    (``validation_fraction`` of them held out for early stopping) and tests on the store's
    held-out test strains of the same materials (paper 000's protocol); ``material`` holds out
    ``test_material_fraction`` of each class's materials (and ``validation_fraction`` of the
    rest), training on the training strains of the training materials and testing on the test
    strains of the unseen ones. Space-group classes need ``min_materials_per_class`` materials;
    the rest are excluded and counted.

    Args:
        store_path: the subset's ``patterns.zarr`` (profiles rendered by the simulate flow).
        subset_config: the subset (profile grid, seed).
        preset: the training preset.
        target: ``lattice_system``, ``crystal_system``, ``space_group`` or ``dimensionality``.
        protocol: ``strain`` or ``material``.
        seed: the training seed (the splits use the subset's seed).
        device: overrides ``preset.train.device``.
        callbacks: receive every epoch's record; records of variants after the first carry
            ``prefix = "<variant>/"``.
        progress: tqdm progress bars.
        manifest_path: the subset's ``manifest.parquet`` (dimensionality labels); default:
            beside the store.

    Raises:
        TaskError: the store was simulated with unconstrained strain (symmetry labels no
            longer hold), or too few materials or classes.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    if target not in CLASSIFIER_TARGETS.values():
        raise ConfigError(f"target {target!r} is not one of {list(CLASSIFIER_TARGETS.values())}")
    if preset.data.patterns == "measured_like":
        from xrdpipe.training.measured_like import train_measured_like

        return train_measured_like(
            store_path, subset_config, preset, target, seed, device, callbacks, progress,
            manifest_path,
        )  # fmt: skip
    if preset.model.architecture != "acnn":
        raise ConfigError(
            f"model.architecture {preset.model.architecture!r} trains only with "
            "data.patterns 'measured_like'; stored profiles train the a-CNN variants"
        )
    start = time.perf_counter()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of {list(PROTOCOLS)}")
    identity = store.store_identity(store_path)
    if identity["strain_mode"] == "unconstrained":
        raise TaskError(
            f"store {store_path} was simulated with strain_mode 'unconstrained': the strained "
            "cells no longer keep their space group, so symmetry labels are wrong; simulate a "
            "subset with simulation.strain_mode 'symmetry' (e.g. demo or acnn) for classifiers"
        )
    profile = subset_config.profile
    train_prof, materials, grid = load_profiles(store_path, profile, "train")
    test_prof, test_materials, _ = load_profiles(store_path, profile, "test")
    assert materials["cod_id"].tolist() == test_materials["cod_id"].tolist()
    manifest = (
        Path(manifest_path) if manifest_path else Path(store_path).parent / "manifest.parquet"
    )
    labels = target_labels(materials, target, manifest)

    # classes (and exclusions for space groups)
    counts_by_label = labels.value_counts()
    excluded: dict[str, Any] = {"classes": [], "materials": 0}
    if target == "space_group":
        small = counts_by_label[counts_by_label < preset.split.min_materials_per_class]
        excluded = {"classes": sorted(small.index.tolist(), key=int), "materials": int(small.sum())}
    keep_mat = ~labels.isin(excluded["classes"]).to_numpy()
    class_names = class_order(target, labels[keep_mat].tolist())
    if len(class_names) < 2:
        raise TaskError(
            f"target {target!r} has {len(class_names)} class(es) with at least "
            f"{preset.split.min_materials_per_class if target == 'space_group' else 1} "
            "materials in "
            f"{store_path}; a classifier needs 2"
        )
    index = {c: i for i, c in enumerate(class_names)}
    mat_idx = np.flatnonzero(keep_mat)
    y_mat = np.array([index[labels.iloc[i]] for i in mat_idx], dtype=np.int64)
    train_prof, test_prof = train_prof[mat_idx], test_prof[mat_idx]
    cod_ids = materials["cod_id"].astype(str).to_numpy()[mat_idx]
    n_strains = train_prof.shape[1]
    if preset.split.max_train_strains is not None:
        n_strains = min(n_strains, preset.split.max_train_strains)
        train_prof = train_prof[:, :n_strains]

    if protocol == "strain":
        s_train, s_val = split_train_validation(
            n_strains, 1.0 - preset.split.validation_fraction, seed=subset_config.seed
        )
        x_tr, y_tr = flatten_strains(train_prof[:, s_train], y_mat)
        x_va, y_va = flatten_strains(train_prof[:, s_val], y_mat)
        x_te, y_te = flatten_strains(test_prof, y_mat)
        split_materials = {"train": cod_ids, "validation": cod_ids, "test": cod_ids}
    else:
        m_tr, m_va, m_te = material_split(
            y_mat,
            len(class_names),
            preset.split.test_material_fraction,
            preset.split.validation_fraction,
            subset_config.seed,
        )
        x_tr, y_tr = flatten_strains(train_prof[m_tr], y_mat[m_tr])
        if len(m_va):
            x_va, y_va = flatten_strains(train_prof[m_va], y_mat[m_va])
        else:  # too few materials for held-out validation materials: hold out strains
            s_train, s_val = split_train_validation(
                n_strains, 1.0 - preset.split.validation_fraction, seed=subset_config.seed
            )
            x_tr, y_tr = flatten_strains(train_prof[m_tr][:, s_train], y_mat[m_tr])
            x_va, y_va = flatten_strains(train_prof[m_tr][:, s_val], y_mat[m_tr])
        x_te, y_te = flatten_strains(test_prof[m_te], y_mat[m_te])
        split_materials = {
            "train": cod_ids[m_tr],
            "validation": cod_ids[m_va],
            "test": cod_ids[m_te],
        }

    def per_class(y: np.ndarray) -> dict[str, int]:
        found = np.bincount(y, minlength=len(class_names))
        return {c: int(found[i]) for i, c in enumerate(class_names)}

    counts = {
        "materials": per_class(y_mat),
        "train": per_class(y_tr),
        "validation": per_class(y_va),
        "test": per_class(y_te),
    }
    dev = pick_device(device or preset.train.device)
    step_deg = float(grid[1] - grid[0])
    model_cfgs: dict[str, ACNNConfig] = {}
    variants: list[VariantResult] = []
    for i, variant in enumerate(preset.model.variants):
        prefix = "" if i == 0 else f"{variant}/"
        model, result = fit_acnn(
            x_tr,
            y_tr,
            x_va,
            y_va,
            len(class_names),
            preset,
            variant=variant,
            step_deg=step_deg,
            two_theta_start=float(grid[0]),
            seed=seed,
            batch_seed=seed_for(seed, i),
            device=str(dev),
            callbacks=with_prefix(callbacks, prefix),
            progress=progress,
            checkpoint_metadata={"task": target, "class_names": class_names, "variant": variant},
        )
        model_cfgs[variant] = model.config
        y_pred = predict_batched(model, x_te, TEST_BATCH, dev).argmax(dim=1).numpy()
        labels_idx = list(range(len(class_names)))
        variants.append(
            VariantResult(
                variant=variant,
                model=model,
                train=result,
                accuracy=float((y_pred == y_te).mean()),
                balanced_accuracy=float(balanced_accuracy_score(y_te, y_pred)),
                macro_f1=float(
                    f1_score(y_te, y_pred, labels=labels_idx, average="macro", zero_division=0)
                ),
                confusion=confusion_matrix(y_te, y_pred, labels=labels_idx),
                y_pred=y_pred,
            )
        )

    rf_acc = rf_bacc = math.nan
    if preset.baseline.rf_trees > 0:
        forest = RandomForestClassifier(
            n_estimators=preset.baseline.rf_trees, random_state=seed % 2**32, n_jobs=-1
        )
        forest.fit(bin_patterns(x_tr, preset.baseline.rf_bins), y_tr)
        rf_pred = forest.predict(bin_patterns(x_te, preset.baseline.rf_bins))
        rf_acc = float((rf_pred == y_te).mean())
        rf_bacc = float(balanced_accuracy_score(y_te, rf_pred))

    config = {
        "task": target.replace("_", "-"),
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "model": {v: {"name": "acnn", **config_to_dict(c)} for v, c in model_cfgs.items()},
        "train": asdict(classifier_train_config(preset, seed, str(dev))),
        "data": {
            "target": target,
            "protocol": protocol,
            "seed": seed,
            "class_names": class_names,
            "n_train": int(len(y_tr)),
            "n_validation": int(len(y_va)),
            "n_test": int(len(y_te)),
            "train_strains_used": n_strains,
            "excluded_classes": excluded["classes"],
            "excluded_materials": excluded["materials"],
            "test_materials": [str(i) for i in split_materials["test"]],
        },
        "store": identity,
    }
    return ClassifierResult(
        target=target,
        protocol=protocol,
        class_names=class_names,
        variants=variants,
        counts=counts,
        excluded=excluded,
        rf_accuracy=rf_acc,
        rf_balanced_accuracy=rf_bacc,
        y_true=y_te,
        config=config,
        input_example=x_te[:2].astype(np.float32),
        store=identity,
        wall_s=time.perf_counter() - start,
    )
