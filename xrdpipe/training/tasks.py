"""The two papers' training tasks as pure functions: a pattern store in, a trained model out.

Nothing here imports MLflow or Prefect: each task returns a result dataclass (model, history,
test metrics, the full resolved config, predictions for plots) and hands every epoch's record
to the caller's callbacks; :mod:`xrdpipe.tracking` logs them, ``flows/train.py`` and the CLI
wire the two together.

1. :func:`train_phase_fractions` (paper 002): the first ``N`` materials of
   :func:`grid_material_order`, mixtures of up to ``K`` phases drawn on the fly from the 60 %
   training part of the training strains, a fixed validation set from the other 40 %, and a
   fixed test set from the held-out test strains (:func:`~xrdpipe.patterns.mixtures.
   make_fixed_mixture_set` via :func:`~xrdpipe.patterns.datasets.fixed_mixture_set`, its spec
   and SHA-256 recorded and reported). Loss and metric: total variation distance.
2. :func:`train_classifier` (paper 000): the a-CNN on the store's pre-rendered single-phase
   profiles, augmented at tensor level (peak scaling, elimination, shift), with the protocol
   ``strain`` (same materials, held-out strain conditions: paper 000's setting) or
   ``material`` (material-disjoint, stratified by class). A random forest on binned patterns
   is fitted on the same split as a classical baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from xrdpipe import store
from xrdpipe.config import (
    CRYSTAL_SYSTEMS,
    LATTICE_SYSTEMS,
    ClassifierPreset,
    PhaseFractionPreset,
    SubsetConfig,
)
from xrdpipe.errors import ConfigError, XrdpipeError
from xrdpipe.models import ACNN, ACNNConfig, PhaseCNN, PhaseCNNConfig, config_to_dict
from xrdpipe.patterns.augment import augment_profiles
from xrdpipe.patterns.config import MixtureConfig
from xrdpipe.patterns.datasets import (
    fixed_mixture_set,
    load_peaks,
    load_profiles,
    material_table,
)
from xrdpipe.patterns.mixtures import (
    MixtureSampler,
    split_train_validation,
)
from xrdpipe.training.loop import Callback, TrainConfig, TrainResult, pick_device, train
from xrdpipe.training.losses import (
    TVDLoss,
    accuracy,
    classification_loss,
    total_variation_distance,
)

TASKS = ("phase-fractions", "lattice-system", "crystal-system", "space-group", "dimensionality")
"""Task names of ``xrdpipe train`` and the train flow."""

CLASSIFIER_TARGETS: dict[str, str] = {
    "lattice-system": "lattice_system",
    "crystal-system": "crystal_system",
    "space-group": "space_group",
    "dimensionality": "dimensionality",
}
"""Classifier task -> target of :func:`train_classifier`."""

Target = Literal["lattice_system", "crystal_system", "space_group", "dimensionality"]
Protocol = Literal["strain", "material"]
PROTOCOLS = ("strain", "material")

VALIDATION_SEED_OFFSET = 7_919
"""The fixed validation mixtures are drawn with ``subset.seed + 7919``."""
TEST_SEED_OFFSET = 104_729
"""The fixed test mixtures are drawn with ``subset.seed + 104729``: one test set per subset,
N, K and size, whatever the training seed (the hash is reproducible per device type)."""
FIXED_SET_BATCH = 512
"""Fixed validation and test sets are drawn in batches of 512 whatever the training batch, so
presets with other batch sizes share them (the draw depends on the batch size)."""
MAX_PLOT_PREDICTIONS = 2000
"""Test predictions kept in a result for plots."""


class TaskError(XrdpipeError):
    """A training task cannot run on this store (wrong strain mode, too few materials...)."""


def _seed_for(*parts: int) -> int:
    """A 63-bit seed derived from integers (epochs, variants, seeds)."""
    state = np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def completed_material_table(store_path: store.StorePath) -> pd.DataFrame:
    """One row per completed, non-quarantined material of a store (store order)."""
    return material_table(store.load_completed(store_path))


def grid_material_order(materials: pd.DataFrame, seed: int) -> list[str]:
    """The documented order in which materials enter the N of a phase-fraction model.

    Rule: the COD ids of ``materials`` sorted as integers (so the order does not depend on
    the manifest's row order), then permuted by ``numpy.random.default_rng(seed)``. The
    first ``N`` ids are the material set of an ``N``-material model; a larger ``N`` extends
    a smaller one (nested sets), and the evaluation grid reuses the same rule.

    Args:
        materials: a frame with a ``cod_id`` column (e.g. :func:`completed_material_table`).
        seed: the subset's seed.

    Returns:
        COD ids in grid order.
    """
    ids = sorted((str(i) for i in materials["cod_id"]), key=int)
    order = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in order]


def _store_identity(store_path: store.StorePath) -> dict[str, Any]:
    attrs = store.open_store(store_path).attrs
    return {
        "store_path": str(store_path),
        "store_fingerprint": str(attrs.get("fingerprint", "")),
        "manifest_sha256": str(attrs.get("manifest_sha256", "")),
        "strain_mode": str(attrs.get("strain_mode", "")),
        "simulator_version": str(attrs.get("simulator_version", "")),
    }


def _with_prefix(callbacks: Sequence[Callback], prefix: str) -> list[Callback]:
    """Callbacks that see ``record["prefix"] = prefix`` (variants log under their own names)."""

    def wrap(callback: Callback) -> Callback:
        return lambda record: callback({**record, "prefix": prefix})

    return [wrap(cb) for cb in callbacks]


# --- paper 002: phase fractions ------------------------------------------------------------


@dataclass
class PhaseFractionResult:
    """What :func:`train_phase_fractions` returns.

    Attributes:
        model: the trained network (best validation weights), on the training device.
        train: the loop's result (history, best epoch, stop reason, wall time).
        config: the full resolved configuration (subset, preset, model, mixtures, training).
        materials: COD ids of the N outputs, in output order.
        formulas: their formulas.
        test_tvd_mean: mean TVD on the fixed test set.
        test_tvd_std: its standard deviation over test mixtures.
        test_mae: mean absolute error of the fractions.
        test_set_sha256: SHA-256 of the test patterns and fractions.
        test_set_key: hash of the test set's spec (its record under ``record_dir``).
        validation_set_sha256: same for the validation set.
        n_test: test mixtures.
        predictions: ``(<= 2000, N)`` predicted fractions of the first test mixtures.
        targets: their true fractions.
        input_example: two test patterns ``(2, n_points)`` float32.
        store: store path, fingerprint, manifest hash, strain mode.
        wall_s: wall time of the whole task.
    """

    model: PhaseCNN
    train: TrainResult
    config: dict[str, Any]
    materials: list[str]
    formulas: list[str]
    test_tvd_mean: float
    test_tvd_std: float
    test_mae: float
    test_set_sha256: str
    test_set_key: str
    validation_set_sha256: str
    n_test: int
    predictions: np.ndarray
    targets: np.ndarray
    input_example: np.ndarray
    store: dict[str, Any]
    wall_s: float
    test_patterns: Tensor | None = field(default=None, repr=False)
    test_fractions: Tensor | None = field(default=None, repr=False)
    train_strain_index: np.ndarray | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, float]:
        """Summary metrics (test, best validation, time)."""
        return {
            "test_tvd_mean": self.test_tvd_mean,
            "test_tvd_std": self.test_tvd_std,
            "test_mae": self.test_mae,
            "best_val_tvd": self.train.best_val_loss,
            "best_epoch": float(self.train.best_epoch),
            "train_wall_s": self.train.wall_s,
            "wall_s": self.wall_s,
        }


@torch.no_grad()
def _predict_fractions(model: PhaseCNN, x: Tensor, batch: int = 256) -> Tensor:
    model.eval()
    device = next(model.parameters()).device
    out = [model.predict(x[i : i + batch].to(device)) for i in range(0, x.shape[0], batch)]
    return torch.cat(out)


def train_phase_fractions(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: PhaseFractionPreset,
    n_materials: int,
    max_phases: int,
    seed: int = 0,
    materials: Sequence[str] | None = None,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    record_dir: str | Path | None = None,
    keep_test_set: bool = False,
) -> PhaseFractionResult:
    """Train paper 002's phase-fraction CNN on mixtures of ``N`` materials, up to ``K`` phases.

    Splits: the store's training strains are split 60/40 (``preset.train_fraction``) by
    :func:`~xrdpipe.patterns.mixtures.split_train_validation` with the subset's seed; training
    mixtures are drawn on the fly from the 60 % part (a fresh seeded sampler per epoch, so a
    resumed run is exact), ``preset.n_validation`` fixed mixtures from the 40 % part validate,
    and ``preset.n_test`` fixed mixtures from the held-out test strains test. The split, the
    validation and the test sets depend on the subset's seed only; ``seed`` changes the
    initialisation and the training stream (paper 002: three seeds per (N, K)).

    Args:
        store_path: the subset's ``patterns.zarr``.
        subset_config: the subset (profile, seed).
        preset: the training preset (``cpu``, ``paper``, ...).
        n_materials: N, the outputs of the network.
        max_phases: K, most phases per mixture.
        seed: the training seed.
        materials: explicit COD ids (length N); default: the first N of
            :func:`grid_material_order` with the subset's seed.
        device: overrides ``preset.device``.
        callbacks: receive every epoch's record (e.g. the MLflow logger).
        progress: tqdm progress bar on stderr.
        checkpoint_dir: where the loop writes ``last``/``best`` checkpoints (``None``: none).
        record_dir: where the fixed sets' spec and hash records go
            (:func:`~xrdpipe.patterns.datasets.fixed_mixture_set`; default
            ``<subset dir>/fixed_sets`` beside a local store): a later draw of the same spec
            that no longer reproduces the hash is refused.
        keep_test_set: return the whole test set and the training strain positions (for
            baselines scored on the same mixtures, :mod:`xrdpipe.evaluation.grid`).

    Returns:
        The :class:`PhaseFractionResult`.
    """
    start = time.perf_counter()
    identity = _store_identity(store_path)
    if materials is None:
        order = grid_material_order(completed_material_table(store_path), subset_config.seed)
        if len(order) < n_materials:
            raise TaskError(
                f"n_materials {n_materials} exceeds the {len(order)} completed materials of "
                f"{store_path}"
            )
        ids = order[:n_materials]
    else:
        ids = [str(i) for i in materials]
        if len(ids) != n_materials:
            raise TaskError(f"{len(ids)} materials given but n_materials is {n_materials}")
    dev = pick_device(device or preset.device)
    train_peaks = load_peaks(store_path, "train", ids, device=dev)
    test_peaks = load_peaks(store_path, "test", ids, device=dev)
    profile = subset_config.profile
    mix_cfg = MixtureConfig(
        n_materials=n_materials,
        max_phases=max_phases,
        batch_size=preset.batch_size,
        fraction_mode=preset.fraction_mode,
        phase_draw=preset.phase_draw,
    )
    train_idx, val_idx = split_train_validation(
        train_peaks.peaks.n_strains, preset.train_fraction, seed=subset_config.seed
    )
    train_pool = train_peaks.peaks.select_strains(train_idx)
    set_cfg = mix_cfg.model_copy(update={"batch_size": FIXED_SET_BATCH})
    if record_dir is None and "://" not in str(store_path):
        record_dir = Path(store_path).parent / "fixed_sets"
    val_set = fixed_mixture_set(
        store_path,
        "train",
        ids,
        set_cfg,
        profile,
        n=preset.n_validation,
        seed=subset_config.seed + VALIDATION_SEED_OFFSET,
        record_dir=record_dir,
        device=dev,
        strain_index=val_idx,
    )
    val_x, val_y, val_sha = val_set.patterns, val_set.phase_fractions, val_set.sha256
    model_cfg = PhaseCNNConfig(
        n_points=profile.n_points,
        n_materials=n_materials,
        width=preset.width,
        fc_sizes=preset.fc_sizes,
    )
    model = PhaseCNN(model_cfg)
    epoch_size = preset.epoch_size or len(train_idx) * n_materials
    steps = max(1, math.ceil(epoch_size / preset.batch_size))
    train_cfg = TrainConfig(
        epochs=preset.epochs,
        steps_per_epoch=steps,
        batch_size=preset.batch_size,
        lr=preset.lr,
        weight_decay=preset.weight_decay,
        lr_schedule=preset.lr_schedule,
        grad_clip=preset.grad_clip,
        early_stopping_patience=preset.early_stopping_patience,
        seed=seed,
        device=str(dev),
        num_threads=preset.num_threads,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        max_minutes=preset.max_minutes,
        eval_batch_size=256,
    )

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler = MixtureSampler(
            train_pool,
            mix_cfg,
            profile,
            seed=_seed_for(seed, epoch),
            device=dev,
            wavelength=train_peaks.wavelength,
        )
        for _ in range(steps):
            patterns, fractions, _ = sampler.sample()
            yield patterns, fractions

    config = {
        "task": "phase-fractions",
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "model": {"name": "phase_cnn", **config_to_dict(model_cfg)},
        "mixtures": mix_cfg.model_dump(mode="json"),
        "train": asdict(train_cfg),
        "data": {
            "n_materials": n_materials,
            "max_phases": max_phases,
            "seed": seed,
            "materials": ids,
            "train_strains": len(train_idx),
            "validation_strains": len(val_idx),
            "test_strains": test_peaks.peaks.n_strains,
            "epoch_size": epoch_size,
            "n_validation": preset.n_validation,
            "n_test": preset.n_test,
            "material_order": "grid_material_order(subset.seed)",
        },
        "store": identity,
    }
    result = train(
        model,
        batches,
        (val_x, val_y),
        TVDLoss(),
        train_cfg,
        metric_fns={"tvd": lambda lo, y: total_variation_distance(torch.softmax(lo, -1), y)},
        callbacks=list(callbacks),
        progress=progress,
        checkpoint_metadata={"task": "phase-fractions", "materials": ids},
    )
    del val_x, val_y
    test_set = fixed_mixture_set(
        store_path,
        "test",
        ids,
        set_cfg,
        profile,
        n=preset.n_test,
        seed=subset_config.seed + TEST_SEED_OFFSET,
        record_dir=record_dir,
        device=dev,
    )
    test_x, test_y, test_sha = test_set.patterns, test_set.phase_fractions, test_set.sha256
    pred = _predict_fractions(model, test_x)
    tvd = total_variation_distance(pred, test_y.to(pred.device), reduction="none").cpu()
    mae = (pred - test_y.to(pred.device)).abs().mean().item()
    keep = min(MAX_PLOT_PREDICTIONS, pred.shape[0])
    formulas = train_peaks.materials.set_index("cod_id").loc[ids, "formula"].astype(str).tolist()
    return PhaseFractionResult(
        model=model,
        train=result,
        config=config,
        materials=ids,
        formulas=formulas,
        test_tvd_mean=float(tvd.mean()),
        test_tvd_std=float(tvd.std()) if tvd.numel() > 1 else 0.0,
        test_mae=float(mae),
        test_set_sha256=test_sha,
        test_set_key=test_set.key,
        validation_set_sha256=val_sha,
        n_test=int(test_x.shape[0]),
        predictions=pred[:keep].cpu().numpy(),
        targets=test_y[:keep].cpu().numpy(),
        input_example=test_x[:2].cpu().numpy().astype(np.float32),
        store=identity,
        wall_s=time.perf_counter() - start,
        test_patterns=test_x.cpu() if keep_test_set else None,
        test_fractions=test_y.cpu() if keep_test_set else None,
        train_strain_index=np.asarray(train_idx) if keep_test_set else None,
    )


# --- paper 000: crystal-structure classification -------------------------------------------


@dataclass
class VariantResult:
    """One a-CNN variant's training and test metrics.

    Attributes:
        variant: ``position_channel`` or ``paper``.
        model: the trained a-CNN (best validation weights).
        train: the loop's result.
        accuracy: test accuracy.
        balanced_accuracy: mean per-class recall on the test set.
        macro_f1: macro-averaged F1 over the classes.
        confusion: ``(C, C)`` test confusion matrix (rows true, columns predicted).
        y_pred: test predictions (class indices).
    """

    variant: str
    model: ACNN
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
    def model(self) -> ACNN:
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
        return out


def _labels(materials: pd.DataFrame, target: Target, manifest_path: Path | None) -> pd.Series:
    """The target label of every material, as strings."""
    if target in ("lattice_system", "crystal_system"):
        return materials[target].astype(str)
    if target == "space_group":
        return materials["space_group_number"].astype(int).astype(str)
    if target == "dimensionality":
        if manifest_path is None or not Path(manifest_path).is_file():
            raise TaskError(f"dimensionality labels need the manifest; none at {manifest_path}")
        manifest = pd.read_parquet(manifest_path, columns=["cod_id", "dimensionality"])
        manifest["cod_id"] = manifest["cod_id"].astype(str)
        dims = manifest.set_index("cod_id")["dimensionality"]
        ids = materials["cod_id"].astype(str)
        missing = [i for i in ids if i not in dims.index or pd.isna(dims.get(i))]
        if missing:
            raise TaskError(f"materials {missing[:5]} have no dimensionality in {manifest_path}")
        return pd.Series([f"{int(dims[i])}D" for i in ids], index=materials.index)
    raise ConfigError(f"target {target!r} is not one of {list(CLASSIFIER_TARGETS.values())}")


def _class_order(target: str, present: Sequence[str]) -> list[str]:
    canonical = {"lattice_system": LATTICE_SYSTEMS, "crystal_system": CRYSTAL_SYSTEMS}
    if target in canonical:
        return [c for c in canonical[target] if c in set(present)]
    if target == "space_group":
        return sorted(set(present), key=int)
    return sorted(set(present))


def _material_split(
    y_mat: np.ndarray, n_classes: int, test_fraction: float, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Material indices (train, validation, test), stratified by class, seeded."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(y_mat == c))
        n = len(members)
        n_test = max(1, int(round(test_fraction * n))) if n >= 2 else 0
        rest = n - n_test
        n_val = max(1, int(round(val_fraction * rest))) if rest >= 3 else 0
        test += members[:n_test].tolist()
        val += members[n_test : n_test + n_val].tolist()
        train += members[n_test + n_val :].tolist()
    if not test:
        raise TaskError("protocol 'material' needs a class with at least 2 materials; none has")
    return np.sort(train), np.sort(val), np.sort(test)


def bin_patterns(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Average ``(n, n_points)`` patterns over ``n_bins`` equal windows (the remainder dropped)."""
    width = max(1, x.shape[1] // n_bins)
    n_bins = x.shape[1] // width
    return x[:, : n_bins * width].reshape(x.shape[0], n_bins, width).mean(axis=2)


def _flatten(profiles: np.ndarray, y_mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, S, n)`` profiles and per-material labels to ``(M*S, n)`` and ``(M*S,)``."""
    m, s, n = profiles.shape
    return profiles.reshape(m * s, n), np.repeat(y_mat, s)


def acnn_config(
    variant: str, n_points: int, n_classes: int, preset: ClassifierPreset
) -> ACNNConfig:
    """The a-CNN of one variant (``paper``, ``position_channel`` or ``binned``) for a preset."""
    return ACNNConfig(
        n_points=n_points,
        n_classes=n_classes,
        position_channel=variant == "position_channel",
        pool_bins=preset.pool_bins if variant == "binned" else 1,
    )


def classifier_train_config(preset: ClassifierPreset, seed: int, device: str) -> TrainConfig:
    """The training loop's settings of an a-CNN run under ``preset``."""
    return TrainConfig(
        epochs=preset.epochs,
        steps_per_epoch=None,
        batch_size=preset.batch_size,
        lr=preset.lr,
        lr_schedule=preset.lr_schedule,
        ema_decay=preset.ema_decay,
        early_stopping_patience=preset.early_stopping_patience,
        seed=seed,
        device=device,
        num_threads=preset.num_threads,
        max_minutes=preset.max_minutes,
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

    A fresh seeded permutation per epoch, batches of ``preset.batch_size`` (a last batch of
    one is dropped: batch statistics need two) and, with ``preset.augment``, tensor-level
    augmentation (peak scaling, elimination, isotropic strain, shift: those with a
    probability above 0) and re-normalisation to a maximum of 1. ``x`` and ``y`` live on the
    training device; ``two_theta_start`` (the grid's first point) is needed for the strain.
    """

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator(device=x.device).manual_seed(_seed_for(seed, epoch))
        order = torch.randperm(x.shape[0], generator=gen, device=x.device)
        for i in range(0, order.numel(), preset.batch_size):
            idx = order[i : i + preset.batch_size]
            if idx.numel() < 2:
                continue
            batch = x[idx]
            if preset.augment:
                batch = augment_profiles(batch, preset.augmentation, gen, step_deg, two_theta_start)
                batch = batch / batch.amax(dim=1, keepdim=True).clamp(min=1e-12)
            yield batch, y[idx]

    return batches


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
        device: overrides ``preset.device``.
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

    start = time.perf_counter()
    if target not in CLASSIFIER_TARGETS.values():
        raise ConfigError(f"target {target!r} is not one of {list(CLASSIFIER_TARGETS.values())}")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of {list(PROTOCOLS)}")
    identity = _store_identity(store_path)
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
    labels = _labels(materials, target, manifest)

    # classes (and exclusions for space groups)
    counts_by_label = labels.value_counts()
    excluded: dict[str, Any] = {"classes": [], "materials": 0}
    if target == "space_group":
        small = counts_by_label[counts_by_label < preset.min_materials_per_class]
        excluded = {"classes": sorted(small.index.tolist(), key=int), "materials": int(small.sum())}
    keep_mat = ~labels.isin(excluded["classes"]).to_numpy()
    class_names = _class_order(target, labels[keep_mat].tolist())
    if len(class_names) < 2:
        raise TaskError(
            f"target {target!r} has {len(class_names)} class(es) with at least "
            f"{preset.min_materials_per_class if target == 'space_group' else 1} materials in "
            f"{store_path}; a classifier needs 2"
        )
    index = {c: i for i, c in enumerate(class_names)}
    mat_idx = np.flatnonzero(keep_mat)
    y_mat = np.array([index[labels.iloc[i]] for i in mat_idx], dtype=np.int64)
    train_prof, test_prof = train_prof[mat_idx], test_prof[mat_idx]
    cod_ids = materials["cod_id"].astype(str).to_numpy()[mat_idx]
    n_strains = train_prof.shape[1]
    if preset.max_train_strains is not None:
        n_strains = min(n_strains, preset.max_train_strains)
        train_prof = train_prof[:, :n_strains]

    if protocol == "strain":
        s_train, s_val = split_train_validation(
            n_strains, 1.0 - preset.validation_fraction, seed=subset_config.seed
        )
        x_tr, y_tr = _flatten(train_prof[:, s_train], y_mat)
        x_va, y_va = _flatten(train_prof[:, s_val], y_mat)
        x_te, y_te = _flatten(test_prof, y_mat)
        split_materials = {"train": cod_ids, "validation": cod_ids, "test": cod_ids}
    else:
        m_tr, m_va, m_te = _material_split(
            y_mat,
            len(class_names),
            preset.test_material_fraction,
            preset.validation_fraction,
            subset_config.seed,
        )
        x_tr, y_tr = _flatten(train_prof[m_tr], y_mat[m_tr])
        if len(m_va):
            x_va, y_va = _flatten(train_prof[m_va], y_mat[m_va])
        else:  # too few materials for held-out validation materials: hold out strains
            s_train, s_val = split_train_validation(
                n_strains, 1.0 - preset.validation_fraction, seed=subset_config.seed
            )
            x_tr, y_tr = _flatten(train_prof[m_tr][:, s_train], y_mat[m_tr])
            x_va, y_va = _flatten(train_prof[m_tr][:, s_val], y_mat[m_tr])
        x_te, y_te = _flatten(test_prof[m_te], y_mat[m_te])
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
    dev = pick_device(device or preset.device)
    xt_tr = torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)).to(dev)
    yt_tr = torch.from_numpy(y_tr).to(dev)
    xt_va = torch.from_numpy(np.ascontiguousarray(x_va, dtype=np.float32))
    yt_va = torch.from_numpy(y_va)
    step_deg = float(grid[1] - grid[0])
    n_points = int(x_tr.shape[1])
    loss_fn = classification_loss(preset.loss)

    train_cfg = classifier_train_config(preset, seed, str(dev))
    model_cfgs: dict[str, ACNNConfig] = {}
    variants: list[VariantResult] = []
    xt_te = torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.float32))
    for i, variant in enumerate(preset.variants):
        cfg = acnn_config(variant, n_points, len(class_names), preset)
        model_cfgs[variant] = cfg
        model = ACNN(cfg)
        prefix = "" if i == 0 else f"{variant}/"
        result = train(
            model,
            profile_batches(xt_tr, yt_tr, preset, _seed_for(seed, i), step_deg, float(grid[0])),
            (xt_va, yt_va),
            loss_fn,
            train_cfg,
            metric_fns={"accuracy": accuracy},
            callbacks=_with_prefix(callbacks, prefix),
            progress=progress,
            checkpoint_metadata={"task": target, "class_names": class_names, "variant": variant},
        )
        model.eval()
        with torch.no_grad():
            logits = torch.cat(
                [
                    model(xt_te[j : j + 1024].to(dev)).float().cpu()
                    for j in range(0, len(xt_te), 1024)
                ]
            )
        y_pred = logits.argmax(dim=1).numpy()
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
    if preset.rf_trees > 0:
        forest = RandomForestClassifier(
            n_estimators=preset.rf_trees, random_state=seed % 2**32, n_jobs=-1
        )
        forest.fit(bin_patterns(x_tr, preset.rf_bins), y_tr)
        rf_pred = forest.predict(bin_patterns(x_te, preset.rf_bins))
        rf_acc = float((rf_pred == y_te).mean())
        rf_bacc = float(balanced_accuracy_score(y_te, rf_pred))

    config = {
        "task": target.replace("_", "-"),
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "model": {v: {"name": "acnn", **config_to_dict(c)} for v, c in model_cfgs.items()},
        "train": asdict(train_cfg),
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
