"""The mixture detector of the one-phase flag: is a scan one phase, or several?

A crystal-system classifier answers for every scan, also for a mixture. The peak tests of
:mod:`xrdpipe.evaluation.ood` catch a scan with no sharp peak (amorphous, noise only) but not
a mixture: the lines of two or three phases look like the lines of one phase with a larger
cell, and the peak count flags 2-4 % of 2-3-phase mixtures (``benchmarks/results/unseen.json``
before this detector). No single statistic of a pattern separates them, so a network learns
it, from the same training materials as the classifier and through the same instrument:

* patterns: :meth:`~xrdpipe.training.measured_like_sampler.MeasuredLikeSampler.sample_mixtures` of
  the training materials, 1 to ``max_phases`` distinct materials per pattern (uniform), flat
  intensity fractions, each phase with its own strain, size and preferred orientation;
* materials: with ``balance_line_counts``, the pools are :func:`line_count_pool`s: phases of
  few lines (simple cells, common among real crystals, rare among synthetic ones) are drawn
  as often as those of many;
* label: ``mixture`` for two or more phases whose smallest intensity fraction is at least
  ``min_fraction``; patterns with a smaller minor phase are left out of the loss (a 2 %
  phase may not show: no label is right for it);
* network: the classifier preset's architecture with two outputs, the preset's loop
  settings with ``max_minutes`` of its own, a cosine learning rate over them, a moving
  average of the weights (:data:`EMA_DECAY`) and, with ``cpu_bf16``, bf16 forward passes on
  a CPU; early stopping on validation mixtures of the
  held-out validation materials (drawn once, seeded).

Its output ``p(mixture)`` is the ``mixture`` test of the flag rule; the threshold is a
quantile of the single-phase validation patterns (:func:`~xrdpipe.evaluation.ood.fit_flag_rule`).
It is saved beside its classifier: checkpoint ``<stem>`` has its detector at
``<stem>-mixture`` (:func:`save_detector`, :func:`load_detector`;
:func:`xrdpipe.models.checkpoints.companion_stem`), so a run's ``checkpoint/`` artifact
carries both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.config.presets import MixtureDetectorSettings
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.training.classifier import classifier_train_config
from xrdpipe.training.inference import predict_batched
from xrdpipe.training.loop import TrainResult, train
from xrdpipe.training.losses import accuracy
from xrdpipe.training.seeds import seed_for

CLASSES = ("one phase", "mixture")
"""The detector's outputs, in order."""
VALIDATION_PATTERNS = 1536
"""Validation patterns drawn (before leaving out the unlabelled ones)."""
EMA_DECAY = 0.998
"""The detector's weights are an exponential moving average (horizon ~500 steps): its
validation scores jumped by 0.05 in AUC between epochs without one."""
DETECTOR_METADATA = {"role": "mixture detector", "class_names": list(CLASSES)}
"""What a detector's checkpoint says it is."""
STRONG_LINE_SHARE = 0.01
"""A strong line has at least this share of its material's strongest intensity."""
MAX_REPEATS = 10
"""Most copies of one material in a line-count-balanced pool (:func:`line_count_pool`)."""


@dataclass
class DetectorResult:
    """A trained mixture detector.

    Attributes:
        model: the network (two outputs: :data:`CLASSES`), in eval mode.
        train: the training loop's history.
        validation_auc: area under the ROC curve on the validation patterns.
        n_validation: labelled validation patterns.
        wall_s: seconds of training.
    """

    model: nn.Module
    train: TrainResult
    validation_auc: float
    n_validation: int
    wall_s: float

    @property
    def metadata(self) -> dict[str, Any]:
        """What its checkpoint records (role, outputs, validation AUC)."""
        return {**DETECTOR_METADATA, "validation_auc": self.validation_auc}


def mixture_labels(
    n_phases: Tensor, min_fraction: Tensor, threshold: float
) -> tuple[Tensor, Tensor]:
    """``(labels, keep)`` of drawn patterns: 1 mixture, 0 one phase.

    ``keep`` is False for a mixture whose minor phase is below ``threshold`` (left out).
    """
    several = n_phases >= 2
    keep = ~several | (min_fraction >= threshold)
    return several.long(), keep


def strong_line_counts(peaks: PeakArrays, profile: ProfileConfig) -> np.ndarray:
    """``(M,)``: each material's strong reflections inside the grid.

    Counted in its first stored strain condition: reflections with at least
    :data:`STRONG_LINE_SHARE` of the strongest one's intensity inside the grid.
    """
    two_theta = peaks.two_theta[:, 0]
    inside = (two_theta >= profile.two_theta_min) & (two_theta <= profile.two_theta_max)
    intensity = torch.where(peaks.peak_mask[:, 0] & inside, peaks.intensity[:, 0], 0.0)
    top = intensity.max(dim=1, keepdim=True).values
    strong = (intensity > 0) & (intensity >= STRONG_LINE_SHARE * top)
    return strong.sum(dim=1).cpu().numpy()


def line_count_pool(
    counts: np.ndarray, indices: np.ndarray, max_repeats: int = MAX_REPEATS
) -> np.ndarray:
    """``indices`` repeated so that each octave of strong-line count weighs alike.

    Octave ``k`` holds the materials with ``2^k <= counts < 2^(k+1)`` lines (no line counts
    as one). A material of an octave with ``n_k`` materials is repeated
    ``round(max_k n_k / n_k)`` times, at most ``max_repeats``; materials keep their order.
    Synthetic crystals have few phases of few lines (half of the `synthetic` subset's
    materials have over 67 strong lines, about 9 % under 16), and a mixture of two such
    phases is what a detector trained on each material once misses (docs/evaluation.md).
    With repeats, the distinct draw of a mixture's phases can pick one material twice
    (under 1 in 1,000 three-phase draws of the `synthetic` pool): such a draw is one phase
    labelled a mixture.
    """
    indices = np.asarray(indices)
    if indices.size == 0:
        return indices
    octave = np.floor(np.log2(np.maximum(np.asarray(counts)[indices], 1))).astype(np.int64)
    per_octave = np.bincount(octave)
    repeats = np.clip(np.round(per_octave.max() / per_octave[octave]), 1, max_repeats)
    return np.repeat(indices, repeats.astype(np.int64))


def mixture_probability(model: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """``p(mixture)`` of prepared patterns ``(B, n_points)``: ``(B,)``."""
    logits = predict_batched(model, np.asarray(x, dtype=np.float32), 512, torch.device(device))
    return torch.softmax(logits.float(), dim=1)[:, 1].numpy().astype(np.float64)


def save_detector(
    classifier: str | os.PathLike[str], model: nn.Module, metadata: dict[str, Any]
) -> Path:
    """Save ``model`` as the detector of checkpoint ``classifier``; returns its weights file."""
    from xrdpipe.models.checkpoints import MIXTURE_DETECTOR_ROLE, companion_stem, save_checkpoint

    stem = companion_stem(classifier, MIXTURE_DETECTOR_ROLE)
    return save_checkpoint(stem, model, metadata={**DETECTOR_METADATA, **metadata})


def load_detector(
    classifier: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> nn.Module | None:
    """The detector saved beside checkpoint ``classifier`` (eval mode); None if it has none."""
    from xrdpipe.models.checkpoints import MIXTURE_DETECTOR_ROLE, load_companion

    return load_companion(classifier, MIXTURE_DETECTOR_ROLE, device)


def train_mixture_detector(
    peaks: PeakArrays,
    train_materials: np.ndarray,
    validation_materials: np.ndarray,
    sampler_args: tuple[ProfileConfig, float, float],
    preset: ClassifierPreset,
    settings: MixtureDetectorSettings,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> DetectorResult:
    """Train the detector (module docstring) on ``train_materials`` of ``peaks``.

    Args:
        peaks: the store's peak lists (all materials).
        train_materials: indices of the classifier's training materials.
        validation_materials: indices of its validation materials (early stopping).
        sampler_args: ``(profile, max_isotropic_strain, wavelength)`` of the classifier.
        preset: the classifier's preset (network and loop settings).
        settings: the detector's own settings.
        seed: seeds the weights and the draws (distinct from the classifier's streams).
        device: where it trains.
        progress: show the loop's bar.
    """
    from sklearn.metrics import roc_auc_score

    from xrdpipe.training.measured_like import build_network
    from xrdpipe.training.measured_like_sampler import MeasuredLikeSampler

    start = time.perf_counter()
    dev = torch.device(device)
    k = settings.max_phases
    if settings.balance_line_counts:
        counts = strong_line_counts(peaks, sampler_args[0])
        train_materials = line_count_pool(counts, train_materials)
        validation_materials = line_count_pool(counts, validation_materials)
    val_sampler = MeasuredLikeSampler(
        peaks.select_materials(validation_materials), *sampler_args,
        seed=seed_for(seed, 2 * 10**6), device=dev, max_phases=k,
    )  # fmt: skip
    xs, ys = [], []
    for first in range(0, VALIDATION_PATTERNS, 512):
        x, n_phases, minor = val_sampler.sample_mixtures(min(512, VALIDATION_PATTERNS - first))
        y, keep = mixture_labels(n_phases, minor, settings.min_fraction)
        xs.append(x[keep].cpu())
        ys.append(y[keep].cpu())
    x_va, y_va = torch.cat(xs), torch.cat(ys)
    sampler = MeasuredLikeSampler(
        peaks.select_materials(train_materials), *sampler_args,
        seed=seed_for(seed, 2 * 10**6 + 1), device=dev, max_phases=k,
    )  # fmt: skip
    batch_size = preset.train.batch_size
    steps = max(1, preset.data.epoch_size // batch_size)

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler.reseed(seed_for(seed, 2 * 10**6 + 2 + epoch))
        for _ in range(steps):
            x, n_phases, minor = sampler.sample_mixtures(batch_size)
            y, keep = mixture_labels(n_phases, minor, settings.min_fraction)
            yield x[keep], y[keep]

    model, _ = build_network(preset, sampler_args[0].n_points, len(CLASSES), seed_for(seed, 3))
    loop = preset.model_copy(
        update={
            "max_minutes": settings.max_minutes,
            "lr_schedule": "cosine",
            "ema_decay": EMA_DECAY,
            "cpu_bf16": settings.cpu_bf16 or preset.train.cpu_bf16,
        }
    )
    cfg = classifier_train_config(loop, seed, str(dev))
    result = train(
        model,
        batches,
        (x_va, y_va),
        nn.functional.cross_entropy,
        cfg,
        metric_fns={"accuracy": accuracy},
        progress=progress,
    )
    model.eval()
    p = mixture_probability(model, x_va.numpy(), str(dev))
    y = y_va.numpy()
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return DetectorResult(model, result, auc, int(len(y)), time.perf_counter() - start)


def attach_detector(
    checkpoint: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    seed: int = 0,
    device: str | None = None,
    manifest_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    reuse: bool = True,
) -> dict[str, Any]:
    """Give a trained measured-like classifier a mixture detector and refit its calibration.

    For a classifier trained before its preset had ``data.mixture_detector`` (or without it):
    the store's split is found again (:func:`~xrdpipe.training.measured_like.
    measured_like_data`, the subset's seed), the detector trains on the classifier's training
    materials under ``preset.data.mixture_detector`` (default settings when unset), and the
    temperature and flag rule are fitted on the validation patterns the classifier's training
    drew (the same seeded draw: ``seed`` must be the training seed). The detector is saved
    beside the checkpoint and the checkpoint's ``calibration`` rewritten; the weights are
    unchanged. With ``reuse`` a detector already attached is kept and only the calibration is
    refitted (after a change of the flag's rule).

    Returns:
        The new calibration, with ``mixture_detector`` (validation AUC, patterns, minutes).

    Raises:
        TaskError: the store's classes are not the checkpoint's.
    """
    from xrdpipe.config.presets import MixtureDetectorSettings
    from xrdpipe.models.checkpoints import read_metadata, save_checkpoint
    from xrdpipe.training.classifier_inference import ClassifierPredictor
    from xrdpipe.training.labels import TaskError
    from xrdpipe.training.loop import pick_device
    from xrdpipe.training.measured_like import (
        held_out_set,
        measured_like_data,
        validation_calibration,
    )

    dev = pick_device(device or preset.train.device)
    predictor = ClassifierPredictor.load(checkpoint, dev)
    data = measured_like_data(
        store_path,
        subset_config,
        preset,
        predictor.target,
        manifest_path,  # type: ignore[arg-type]
    )
    if data.class_names != predictor.classes:
        raise TaskError(
            f"store {store_path} has classes {data.class_names}; checkpoint {checkpoint} has "
            f"{predictor.classes}: not the store it was trained on"
        )
    x_va, y_va = held_out_set(
        data.peaks, data.validation, data.y_all, data.sampler_args, seed_for(seed, 10**6), dev
    )
    sidecar = read_metadata(checkpoint)
    previous = (sidecar.get("metadata", {}).get("calibration") or {}).get("mixture_detector")
    model = load_detector(checkpoint, dev) if reuse else None
    if model is not None and previous:
        record = {**previous, "reused": True}
    else:
        settings = preset.data.mixture_detector or MixtureDetectorSettings()
        detector = train_mixture_detector(
            data.peaks, data.train, data.validation, data.sampler_args, preset, settings, seed,
            dev, progress,
        )  # fmt: skip
        model = detector.model
        record = {
            "validation_auc": detector.validation_auc,
            "n_validation": detector.n_validation,
            "minutes": detector.wall_s / 60.0,
            "settings": settings.model_dump(mode="json"),
        }
        save_detector(checkpoint, model, {"task": predictor.target, **detector.metadata})
    mixture = mixture_probability(model, x_va, str(dev))
    calibration = validation_calibration(x_va, predictor.logits(x_va), y_va, data.profile, mixture)
    calibration["mixture_detector"] = record
    save_checkpoint(
        checkpoint,
        predictor.model,
        train_config=sidecar.get("train_config"),
        metadata={**sidecar.get("metadata", {}), "calibration": calibration},
    )
    return calibration


__all__ = [
    "CLASSES",
    "DETECTOR_METADATA",
    "DetectorResult",
    "attach_detector",
    "line_count_pool",
    "load_detector",
    "save_detector",
    "mixture_labels",
    "mixture_probability",
    "strong_line_counts",
    "train_mixture_detector",
]
