"""Measured-like classifier training: peak lists rendered through the instrument model on the fly.

Paper 000 trains its a-CNN on a store's clean single-phase profiles
(:func:`xrdpipe.training.classifier.train_classifier` with ``data.patterns: stored``). A
classifier meant for measured scans learns instead from what a diffractometer records
(``data.patterns: measured_like``, issue 18): every training batch is a fresh, seeded draw
of the store's peak lists rendered by the instrument path of the engine
(:mod:`xrdpipe.patterns.instrument`), on the grid of a typical lab scan. Per pattern:

1. a material of the training materials (uniformly) and one of its stored strain conditions
   (for a synthetic subset: the unstrained cell and one symmetry-preserving strain);
2. its strongest ``data.max_peaks`` reflections (:func:`load_peak_lists`), times the
   March-Dollase factor of a random low-index axis and ratio (preferred orientation);
3. an isotropic strain ``e``, uniform in ``[-max_isotropic_strain, max_isotropic_strain]``:
   every d-spacing times ``1 + e``, the angles from Bragg's law at the store's wavelength;
4. the instrument (``data.render``, default :data:`LAB_SCAN_PROFILE`): the Cu K-alpha
   doublet, zero shift and sample displacement, TCH pseudo-Voigt widths (Caglioti U, V, W
   per scan, Scherrer size and microstrain per phase), an exponential and a Chebyshev
   background and an amorphous hump, Poisson counts at a log-uniform count level, then
   min-max rescaling to [0, 1] (what :func:`xrdpipe.readers.prepare_pattern` does to a scan).

Validation and test patterns are drawn the same way, once, with fixed seeds, from materials
held out of training (stratified by class: the ``material`` protocol), so the figures are
for structures never seen. The checkpoint's metadata (``preprocess``) carries the grid, the
wavelength and the normalisation, so that
:class:`~xrdpipe.training.classifier_inference.ClassifierPredictor` prepares a scan exactly as
training rendered its patterns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xrdpipe import store
from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.errors import ConfigError
from xrdpipe.models import ACNN, ResNet1D, ResNet1DConfig, config_to_dict
from xrdpipe.patterns.config import (
    AmorphousHumpConfig,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    MarchDollaseConfig,
    ProfileConfig,
    TCHWidthConfig,
)
from xrdpipe.patterns.datasets import manifest_beside, material_orientation, material_table
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.classifier import (
    ClassifierResult,
    VariantResult,
    acnn_config,
    classifier_train_config,
)
from xrdpipe.training.devices import seed_everything
from xrdpipe.training.inference import predict_batched
from xrdpipe.training.labels import Target, TaskError, class_order
from xrdpipe.training.labels import labels as target_labels
from xrdpipe.training.loop import Callback, pick_device, train
from xrdpipe.training.losses import accuracy, classification_loss
from xrdpipe.training.measured_like_sampler import MeasuredLikeSampler
from xrdpipe.training.seeds import seed_for
from xrdpipe.training.splits import material_split

LAB_SCAN_PROFILE = ProfileConfig(
    two_theta_min=10.0,
    two_theta_max=80.0,
    n_points=3501,
    ka_doublet=True,
    crystallite_size_nm=(20.0, 200.0),
    zero_shift_deg=(-0.05, 0.05),
    background_amplitude=(0.0, 0.3),
    background_decay_deg=(5.0, 30.0),
    instrument=InstrumentConfig(
        goniometer_radius_mm=240.0,
        sample_displacement_mm=(-0.15, 0.15),
        widths=TCHWidthConfig(),
        preferred_orientation=MarchDollaseConfig(ratio=(0.6, 1.2)),
        chebyshev_background=ChebyshevBackgroundConfig(),
        amorphous_hump=AmorphousHumpConfig(height=(0.0, 0.15), center_deg=(15.0, 35.0)),
        counting_noise=CountingNoiseConfig(max_counts=(1e3, 1e5)),
    ),
)
"""The default measured-like scan: 10-80 deg two-theta in 0.02 deg steps (3,501 points, a
common Bragg-Brentano lab scan), Cu K-alpha1/K-alpha2 (ratio 0.5), every instrument effect of
:class:`~xrdpipe.patterns.config.InstrumentConfig` on with its default ranges except those
set here."""

NORMALISATION = "min-max"
"""How every pattern is scaled (training renders and prepared scans): to [0, 1]."""

STORED_CONDITIONS = 2
"""Strain conditions per material read from the store: the unstrained one and the first
training strain (a synthetic subset stores exactly these two)."""

EVAL_PATTERNS_PER_MATERIAL = 2
"""Validation and test patterns drawn per held-out material."""


def render_profile(preset: ClassifierPreset) -> ProfileConfig:
    """The grid and instrument of a measured-like preset (``data.render`` or the lab scan)."""
    profile = preset.data.render or LAB_SCAN_PROFILE
    if profile.instrument is None:
        raise ConfigError(
            "data.render of a measured_like preset needs an instrument section (the renderer "
            "of measured-like patterns); got none"
        )
    return profile


def strongest_peaks(arrays: dict[str, np.ndarray], max_peaks: int) -> dict[str, np.ndarray]:
    """Each peak list's ``max_peaks`` strongest reflections, in increasing two-theta.

    Args:
        arrays: ``(M, S, P)`` arrays (and ``hkl (M, S, P, 3)``) with ``peak_mask`` and
            ``intensity``.
        max_peaks: reflections kept per list.

    Returns:
        The same names, peak axis ``min(P, max_peaks)``; kept peaks first, in their order.
    """
    n_peaks = arrays["intensity"].shape[-1]
    if n_peaks <= max_peaks:
        return arrays
    strength = np.where(arrays["peak_mask"], arrays["intensity"], -1.0)
    top = np.argpartition(-strength, max_peaks - 1, axis=-1)[..., :max_peaks]
    top.sort(axis=-1)
    out = {}
    for name, value in arrays.items():
        index = top[..., None] if value.ndim == 4 else top
        out[name] = np.take_along_axis(value, index, axis=2)
    return out


def load_peak_lists(
    store_path: store.StorePath,
    max_peaks: int,
    *,
    orientation: bool,
    manifest_path: store.StorePath | None = None,
) -> tuple[PeakArrays, Any, float]:
    """The store's peak lists, the strongest ``max_peaks`` of each, block by block.

    Reads :data:`STORED_CONDITIONS` strain conditions per completed material (the unstrained
    one first), one Zarr chunk of materials at a time and only as far along the peak axis as
    that chunk's longest list: a synthetic store's peak axis is as long as its largest cell's
    list (tens of thousands), its median list a hundred (:func:`xrdpipe.store.read_materials`).

    Returns:
        ``(peaks (M, S, max_peaks), materials frame, wavelength in angstrom)``.
    """
    ds = store.load_completed(store_path)
    rows = store.completed_indices(store_path)
    split = ds["split"].values.astype(object)
    strains = np.concatenate(
        [np.flatnonzero(split == "reference"), np.flatnonzero(split == "train")]
    )
    strains = strains[:STORED_CONDITIONS]
    names = ("two_theta", "intensity", "peak_mask", "d_spacing", "hkl")
    if not orientation:
        names = names[:-1]
    blocks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    n_mat = ds.sizes["material"]
    n_peaks = ds["n_peaks"].isel(strain=strains).values.max(axis=1)
    block = store.materials_per_chunk(store_path)
    for a in range(0, n_mat, block):
        used = max(int(n_peaks[a : a + block].max()), 1)
        part = store.read_materials(store_path, names, rows[a : a + block], strains, used)
        arrays = strongest_peaks(part, max_peaks)
        width = arrays["intensity"].shape[-1]
        for n, value in arrays.items():
            pad = [(0, 0)] * value.ndim
            pad[2] = (0, max_peaks - width)
            blocks[n].append(np.pad(value, pad) if width < max_peaks else value)
    arrays = {n: np.concatenate(v) for n, v in blocks.items()}
    materials = material_table(ds)
    extra: dict[str, Any] = {}
    if orientation:
        cod_ids = [str(i) for i in materials["cod_id"]]
        rotations, basis = material_orientation(
            manifest_path if manifest_path is not None else manifest_beside(store_path), cod_ids
        )
        extra = {"hkl": arrays["hkl"], "rotations": rotations, "reciprocal_basis": basis}
    peaks = PeakArrays.from_arrays(
        arrays["two_theta"],
        arrays["intensity"],
        arrays["peak_mask"],
        d_spacing=arrays["d_spacing"],
        **extra,
    )
    return peaks, materials, float(ds.attrs["wavelength"])


def build_network(
    preset: ClassifierPreset, n_points: int, n_classes: int, seed: int
) -> tuple[nn.Module, str]:
    """The preset's network (``model.architecture``), initial weights from ``seed``.

    Returns:
        The model and its name for the result (``resnet1d`` or the a-CNN variant).
    """
    seed_everything(seed)
    if preset.model.architecture == "resnet1d":
        fields = preset.model.resnet.config_fields()
        return ResNet1D(
            ResNet1DConfig(n_points=n_points, n_classes=n_classes, **fields)
        ), "resnet1d"
    variant = preset.model.variants[0]
    return ACNN(acnn_config(variant, n_points, n_classes, preset)), variant


def top_k_accuracy(logits: np.ndarray, y: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def preprocess_metadata(profile: ProfileConfig, wavelength: float) -> dict[str, Any]:
    """What prediction needs to prepare a scan as training rendered its patterns."""
    return {
        "patterns": "measured_like",
        "two_theta_min": profile.two_theta_min,
        "two_theta_max": profile.two_theta_max,
        "n_points": profile.n_points,
        "wavelength": profile.ka1 if profile.ka_doublet else wavelength,
        "ka_doublet": profile.ka_doublet,
        "normalisation": NORMALISATION,
        "background_subtraction": False,
        "profile": profile.model_dump(mode="json"),
    }


def held_out_set(
    peaks: PeakArrays,
    indices: np.ndarray,
    y_mat: np.ndarray,
    sampler_args: tuple[ProfileConfig, float, float],
    seed: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Patterns of held-out materials, drawn once with a fixed seed (validation or test)."""
    sampler = MeasuredLikeSampler(peaks.select_materials(indices), *sampler_args, seed, device)
    n = EVAL_PATTERNS_PER_MATERIAL * len(indices)
    xs, ys = [], []
    for start in range(0, n, 512):
        x, material = sampler.sample(min(512, n - start))
        xs.append(x.cpu().numpy())
        ys.append(y_mat[indices[material.cpu().numpy()]])
    return np.concatenate(xs), np.concatenate(ys)


FLAG_TESTS = ("sharpness", "n_peaks", "max_probability")
"""The flag's tests without a mixture detector (those ``predict`` can run from probabilities)."""
FLAG_TESTS_WITH_DETECTOR = ("sharpness", "mixture")
"""The flag's tests with one: the peak count and the top probability flag as many mixtures as
single phases (2-3 %, ``benchmarks/results/unseen.json``), so their share of the false-flag
budget goes to the tests that work."""
NO_PEAK_SHARPNESS = 20.0
"""The sharpness threshold is at most this (a rise of 20 noise levels is a crystalline peak).
Synthetic crystals are sharper than real ones: the validation quantile alone (46 at its 1 %
tail) flagged ~5 % of real single phases (5 % tail: 48); no amorphous or noise-only scan of the
benchmark reaches 16."""
FLAG_SHARES_WITH_DETECTOR = {"sharpness": 0.2, "mixture": 0.8}
"""Their shares of the false-flag budget: a scan without peaks is far from every single phase,
so a far tail catches it; the detector separates distributions that overlap."""


def validation_calibration(
    x_va: np.ndarray,
    val_logits: np.ndarray,
    y_va: np.ndarray,
    profile: ProfileConfig,
    mixture: np.ndarray | None = None,
) -> dict[str, Any]:
    """The temperature and one-phase flag rule of a trained classifier, from validation.

    The temperature minimises the validation NLL (:func:`~xrdpipe.evaluation.calibration.
    fit_temperature`); the flag rule's thresholds are quantiles of the validation patterns'
    scores (:func:`~xrdpipe.evaluation.ood.fit_flag_rule`): :data:`FLAG_TESTS`, or with the
    detector's ``p(mixture)`` (``mixture``) :data:`FLAG_TESTS_WITH_DETECTOR` with
    :data:`FLAG_SHARES_WITH_DETECTOR` of the budget, the sharpness threshold at most
    :data:`NO_PEAK_SHARPNESS` and the rest of the budget to the detector's (:func:`~xrdpipe.
    evaluation.ood.spend_flag_budget`). The validation patterns are of held-out materials.
    """
    from xrdpipe.evaluation.calibration import fit_temperature
    from xrdpipe.evaluation.ood import fit_flag_rule, one_phase_scores, spend_flag_budget

    temperature = fit_temperature(val_logits, y_va)
    step = (profile.two_theta_max - profile.two_theta_min) / (profile.n_points - 1)
    scores = one_phase_scores(
        x_va, step, logits=val_logits, temperature=temperature, mixture=mixture
    )
    if mixture is None:
        rule = fit_flag_rule(scores, tests=FLAG_TESTS)
    else:
        rule = fit_flag_rule(
            scores, tests=FLAG_TESTS_WITH_DETECTOR, shares=FLAG_SHARES_WITH_DETECTOR
        )
    sharpness = min(rule.thresholds["sharpness"], NO_PEAK_SHARPNESS)
    rule = replace(rule, thresholds={**rule.thresholds, "sharpness": sharpness})
    rule = rule if mixture is None else spend_flag_budget(rule, scores, "mixture")
    return {
        "temperature": float(temperature),
        "flag_rule": {
            "thresholds": {k: float(v) for k, v in rule.thresholds.items()},
            "alpha": float(rule.alpha),
            "n_validation": int(rule.n_validation),
        },
        "fitted_on": f"{len(y_va)} validation patterns of held-out materials",
    }


@dataclass(frozen=True)
class MeasuredLikeData:
    """A store's peak lists, labels and material split for measured-like training.

    Attributes:
        identity: the store's identity (:func:`xrdpipe.store.store_identity`).
        profile: the grid and instrument of the renders.
        peaks: every material's peak lists.
        materials: the materials frame.
        wavelength: the store's wavelength, angstrom.
        class_names: the classes, in output order.
        y_all: each material's class index (-1: excluded).
        excluded: excluded space groups and their material count.
        keep: the materials of kept classes.
        train, validation, test: material indices of the split.
    """

    identity: dict[str, Any]
    profile: ProfileConfig
    peaks: PeakArrays
    materials: Any
    wavelength: float
    class_names: list[str]
    y_all: np.ndarray
    excluded: dict[str, Any]
    keep: np.ndarray
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    max_isotropic_strain: float

    @property
    def sampler_args(self) -> tuple[ProfileConfig, float, float]:
        """``(profile, max_isotropic_strain, wavelength)`` of :class:`MeasuredLikeSampler`."""
        return (self.profile, self.max_isotropic_strain, self.wavelength)


def measured_like_data(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    target: Target,
    manifest_path: str | Path | None = None,
) -> MeasuredLikeData:
    """Read the peak lists and labels, exclude small space groups, split the materials.

    The split is :func:`~xrdpipe.training.splits.material_split` under the subset's seed, so
    a classifier's training, validation and test materials can be found again after training
    (:func:`~xrdpipe.training.mixture_detector.attach_detector`).

    Raises:
        TaskError: fewer than two classes, or a store simulated with unconstrained strain.
    """
    identity = store.store_identity(store_path)
    if identity["strain_mode"] == "unconstrained":
        raise TaskError(
            f"store {store_path} was simulated with strain_mode 'unconstrained': symmetry labels "
            "do not hold; simulate with simulation.strain_mode 'symmetry'"
        )
    profile = render_profile(preset)
    manifest = (
        Path(manifest_path) if manifest_path else Path(store_path).parent / "manifest.parquet"
    )
    peaks, materials, wavelength = load_peak_lists(
        store_path, preset.data.max_peaks, orientation=profile.needs_orientation,
        manifest_path=manifest,
    )  # fmt: skip
    labels = target_labels(materials, target, manifest)
    excluded: dict[str, Any] = {"classes": [], "materials": 0}
    if target == "space_group":
        counts_by_label = labels.value_counts()
        small = counts_by_label[counts_by_label < preset.split.min_materials_per_class]
        excluded = {"classes": sorted(small.index.tolist(), key=int), "materials": int(small.sum())}
    keep = np.flatnonzero(~labels.isin(excluded["classes"]).to_numpy())
    class_names = class_order(target, labels.iloc[keep].tolist())
    if len(class_names) < 2:
        raise TaskError(f"target {target!r} has {len(class_names)} class(es) in {store_path}")
    index = {c: i for i, c in enumerate(class_names)}
    y_all = np.array([index.get(v, -1) for v in labels], dtype=np.int64)
    y_keep = y_all[keep]
    m_tr, m_va, m_te = (
        keep[m]
        for m in material_split(
            y_keep,
            len(class_names),
            preset.split.test_material_fraction,
            preset.split.validation_fraction,
            subset_config.seed,
        )
    )
    return MeasuredLikeData(
        identity, profile, peaks, materials, wavelength, class_names, y_all, excluded, keep,
        m_tr, m_va, m_te, preset.data.max_isotropic_strain,
    )  # fmt: skip


def train_measured_like(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: ClassifierPreset,
    target: Target = "lattice_system",
    seed: int = 0,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    manifest_path: str | Path | None = None,
) -> ClassifierResult:
    """Train a classifier on measured-like patterns rendered on the fly (module docstring).

    Materials are split by class (``split.test_material_fraction``, then
    ``split.validation_fraction`` of the rest, the subset's seed); a space group with fewer
    than ``split.min_materials_per_class`` materials is excluded (and counted). The loop runs
    ``data.epoch_size`` fresh patterns per epoch under the preset's ``train`` section
    (``max_minutes`` caps it, and the bar counts minutes), keeps the best validation weights.

    Returns:
        A :class:`~xrdpipe.training.classifier.ClassifierResult` with one variant (the
        network); ``extra`` holds ``metrics`` (test top-1 and top-5, validation accuracy)
        and ``checkpoint_metadata`` (``preprocess``, class names, target).

    Raises:
        TaskError: fewer than two classes, or a store simulated with unconstrained strain.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

    start = time.perf_counter()
    dev = pick_device(device or preset.train.device)
    data = measured_like_data(store_path, subset_config, preset, target, manifest_path)
    identity, profile, peaks, materials = data.identity, data.profile, data.peaks, data.materials
    wavelength, excluded, keep, class_names = (
        data.wavelength, data.excluded, data.keep, data.class_names
    )  # fmt: skip
    y_all, m_tr, m_va, m_te = data.y_all, data.train, data.validation, data.test
    sampler_args = data.sampler_args
    x_va, y_va = held_out_set(peaks, m_va, y_all, sampler_args, seed_for(seed, 10**6), dev)
    x_te, y_te = held_out_set(peaks, m_te, y_all, sampler_args, seed_for(seed, 10**6 + 1), dev)
    sampler = MeasuredLikeSampler(peaks.select_materials(m_tr), *sampler_args, seed, dev)
    y_train = torch.as_tensor(y_all[m_tr], device=dev)
    batch_size = preset.train.batch_size
    steps = max(1, preset.data.epoch_size // batch_size)

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler.reseed(seed_for(seed, epoch))
        for _ in range(steps):
            x, material = sampler.sample(batch_size)
            yield x, y_train[material]

    model, name = build_network(preset, profile.n_points, len(class_names), seed)
    cfg = classifier_train_config(preset, seed, str(dev))
    preprocess = preprocess_metadata(profile, wavelength)
    checkpoint_metadata = {
        "task": target,
        "class_names": class_names,
        "variant": name,
        "preprocess": preprocess,
    }
    result = train(
        model,
        batches,
        (torch.from_numpy(x_va), torch.from_numpy(y_va)),
        classification_loss(preset.data.loss),
        cfg,
        metric_fns={"accuracy": accuracy},
        callbacks=with_prefix(callbacks, ""),
        progress=progress,
        checkpoint_metadata=checkpoint_metadata,
    )
    model.eval()
    val_logits = predict_batched(model, x_va, 512, dev).numpy()
    detector, mixture = None, None
    if preset.data.mixture_detector is not None:
        from xrdpipe.training.mixture_detector import mixture_probability, train_mixture_detector

        detector = train_mixture_detector(
            peaks, m_tr, m_va, sampler_args, preset, preset.data.mixture_detector, seed, dev,
            progress,
        )  # fmt: skip
        mixture = mixture_probability(detector.model, x_va, str(dev))
    calibration = validation_calibration(x_va, val_logits, y_va, profile, mixture)
    checkpoint_metadata["calibration"] = calibration  # what predict tempers and flags by
    logits = predict_batched(model, x_te, 512, dev).numpy()
    y_pred = logits.argmax(axis=1)
    labels_idx = list(range(len(class_names)))
    variant = VariantResult(
        variant=name,
        model=model,  # type: ignore[arg-type]
        train=result,
        accuracy=float((y_pred == y_te).mean()),
        balanced_accuracy=float(balanced_accuracy_score(y_te, y_pred)),
        macro_f1=float(f1_score(y_te, y_pred, labels=labels_idx, average="macro", zero_division=0)),
        confusion=confusion_matrix(y_te, y_pred, labels=labels_idx),
        y_pred=y_pred,
    )

    def per_class(y: np.ndarray) -> dict[str, int]:
        found = np.bincount(y[y >= 0], minlength=len(class_names))
        return {c: int(found[i]) for i, c in enumerate(class_names)}

    metrics = {
        **({"mixture_detector_val_auc": detector.validation_auc} if detector is not None else {}),
        "test_top5_accuracy": top_k_accuracy(logits, y_te, 5),
        "val_accuracy": float((val_logits.argmax(axis=1) == y_va).mean()),
        "val_top5_accuracy": top_k_accuracy(val_logits, y_va, 5),
    }
    config = {
        "task": target.replace("_", "-"),
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "model": {name: {"name": "resnet1d" if name == "resnet1d" else "acnn",
                         **config_to_dict(model.config)}},  # type: ignore[arg-type]
        "train": asdict(cfg),
        "preprocess": preprocess,
        "data": {
            "target": target,
            "protocol": "material",
            "patterns": "measured_like",
            "seed": seed,
            "class_names": class_names,
            "n_train_materials": len(m_tr),
            "n_validation": len(y_va),
            "n_test": len(y_te),
            "epoch_size": steps * batch_size,
            "excluded_classes": excluded["classes"],
            "excluded_materials": excluded["materials"],
            "test_materials": [str(i) for i in materials["cod_id"].to_numpy()[m_te]],
        },
        "store": identity,
        "calibration": calibration,
    }  # fmt: skip
    return ClassifierResult(
        target=target,
        protocol="material",
        class_names=class_names,
        variants=[variant],
        counts={
            "materials": per_class(y_all[keep]),
            "train": per_class(y_all[m_tr]),
            "validation": per_class(y_va),
            "test": per_class(y_te),
        },
        excluded=excluded,
        rf_accuracy=math.nan,
        rf_balanced_accuracy=math.nan,
        y_true=y_te,
        config=config,
        input_example=x_te[:2].astype(np.float32),
        store=identity,
        wall_s=time.perf_counter() - start,
        extra={
            "metrics": metrics,
            "checkpoint_metadata": checkpoint_metadata,
            **({"mixture_detector": detector} if detector is not None else {}),
        },
    )


__all__ = [
    "EVAL_PATTERNS_PER_MATERIAL",
    "FLAG_TESTS",
    "FLAG_SHARES_WITH_DETECTOR",
    "FLAG_TESTS_WITH_DETECTOR",
    "NO_PEAK_SHARPNESS",
    "held_out_set",
    "LAB_SCAN_PROFILE",
    "MeasuredLikeData",
    "measured_like_data",
    "NORMALISATION",
    "MeasuredLikeSampler",
    "build_network",
    "validation_calibration",
    "load_peak_lists",
    "preprocess_metadata",
    "render_profile",
    "strongest_peaks",
    "top_k_accuracy",
    "train_measured_like",
]
