"""Paper 000's table, third column: trained on synthetic crystals, tested on real COD structures.

The ``strain`` and ``material`` columns (:func:`~xrdpipe.evaluation.cv.cross_validate_classifiers`)
train and test on one store's COD materials. The ``synthetic-to-real`` protocol
(:func:`synthetic_to_real`) trains the same methods on synthetic crystals only (issue 18) and
tests them on the real structures of those columns:

1. Training set (:func:`synthetic_training_set`): the training part of a
   :func:`~xrdpipe.training.splits.material_split` of a synthetic manifest (the function and
   fractions a synthetic classifier's training uses), at most ``max_patterns // draws``
   structures drawn per class in proportion (balanced as the store is), of which the
   split's validation part stops the a-CNN early.
2. Every structure rendered ``draws`` (training) or ``test_draws`` (test) times measured-like
   (:func:`~xrdpipe.evaluation.unseen.measured_like_profile` on the subset's grid;
   :func:`~xrdpipe.evaluation.unseen.structure_peaks`,
   :func:`~xrdpipe.evaluation.unseen.render_structures`) and prepared as ``predict`` prepares
   a scan (:func:`~xrdpipe.evaluation.unseen.prepare_renders`). Training renders come from
   :data:`SYNTHETIC_TRAIN_STREAM`, test renders from
   :data:`~xrdpipe.evaluation.unseen.EVALUATION_STREAM`: no random stream is shared.
3. Each method fitted once on the training renders (classical methods on ``n_bins`` windows,
   fitted on training and validation structures; the a-CNN on the full grid with early
   stopping on the validation structures, :func:`~xrdpipe.evaluation.cv.fit_predict_acnn`)
   and scored on the test renders with the project's metrics.
4. One "fold": the ± of the table is the standard deviation of each metric over a bootstrap
   of the test **structures** (:func:`bootstrap_std`: all renders of a structure resampled
   together), not a spread over folds.

The result is a :class:`~xrdpipe.evaluation.cv.CVResult` of protocol ``synthetic-to-real``
(:class:`SyntheticToRealResult`), so :func:`~xrdpipe.evaluation.tables.classification_table`
sets it beside the other two columns unchanged. Nothing here reads a store or logs;
:func:`xrdpipe.stages.classifiers.run_classification_evaluation` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from xrdpipe.config import ClassifierPreset
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.cv import (
    ACNN_METHODS,
    METHODS,
    CVResult,
    MethodFold,
    fit_predict_acnn,
    fit_predict_classical,
)
from xrdpipe.evaluation.estimators import CLASSICAL_METHODS
from xrdpipe.evaluation.folds import Fold
from xrdpipe.evaluation.metrics import classification_metrics
from xrdpipe.evaluation.tables import SUMMARY_METRICS
from xrdpipe.evaluation.unseen import (
    EVALUATION_STREAM,
    measured_like_profile,
    prepare_renders,
    render_structures,
    structure_peaks,
)
from xrdpipe.models import config_to_dict
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.loop import Callback
from xrdpipe.training.seeds import seed_for
from xrdpipe.training.splits import bin_patterns, material_split

PROTOCOL = "synthetic-to-real"
"""The protocol name (the table's column group)."""
SYNTHETIC_TRAIN_STREAM = 0x5E7_7A1_2
"""Seed root of the synthetic training renders (the test renders use ``EVALUATION_STREAM``)."""
TEST_STREAM = EVALUATION_STREAM
"""Seed root of the real test renders (the evaluation's stream, as ``benchmarks/unseen.py``)."""
MAX_TRAINING_PATTERNS = 20_000
"""Issue 18's bound on the classical methods' training patterns."""


@dataclass
class SyntheticToRealResult(CVResult):
    """A :class:`~xrdpipe.evaluation.cv.CVResult` of one training on synthetic crystals.

    ``folds`` holds one fold whose ``test`` part is every test pattern (row
    ``structure * test_draws + draw``) and whose ``train`` part is empty (the training
    patterns are synthetic, outside ``y_true``); ``n_materials`` is the test structures,
    ``n_strains`` the test renders of each.

    Attributes:
        bootstrap_std: method -> metric -> standard deviation over ``n_boot`` bootstrap
            replicates of the test structures (what :meth:`summary` reports as ``_std``).
        n_boot: bootstrap replicates.
        training: sizes of the training set (structures, validation structures, renders).
    """

    bootstrap_std: dict[str, dict[str, float]] = field(default_factory=dict)
    n_boot: int = 0
    training: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per method: the test metrics (``_mean``) and their bootstrap std (``_std``)."""
        out = super().summary()
        for metric in SUMMARY_METRICS:
            out[f"{metric}_std"] = [self.bootstrap_std[m][metric] for m in out.index]
        return out


def synthetic_training_set(
    labels: Sequence[str],
    class_names: Sequence[str],
    n_structures: int,
    preset: ClassifierPreset,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a synthetic manifest to train on, and to stop the a-CNN on.

    Rows whose label is not in ``class_names`` are left out. The rest are split by
    :func:`~xrdpipe.training.splits.material_split` (``preset.split`` fractions, ``seed``);
    its test part is not used. Of the training and validation parts, ``n_structures`` rows
    in all are kept, each class and part in proportion (per class ``floor``, at least one
    where the class has any, the remainder to the first classes).

    Args:
        labels: the label of each synthetic manifest row, as strings.
        class_names: the classes of the test set, in index order.
        n_structures: structures to keep (training plus validation).
        preset: ``split.test_material_fraction`` and ``split.validation_fraction``.
        seed: split and sample seed.

    Returns:
        ``(training rows, validation rows, class index of every manifest row or -1)``.
    """
    index = {c: i for i, c in enumerate(class_names)}
    y = np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)
    eligible = np.flatnonzero(y >= 0)
    if len(eligible) < 2:
        raise ConfigError(
            f"the synthetic manifest has {len(eligible)} structures of the classes "
            f"{list(class_names)}; need at least 2"
        )
    train, val, _ = (
        eligible[part]
        for part in material_split(
            y[eligible],
            len(class_names),
            preset.split.test_material_fraction,
            preset.split.validation_fraction,
            seed,
        )
    )
    rng = np.random.default_rng(seed_for(seed, 1))
    pool = np.concatenate([train, val])
    share = min(1.0, n_structures / max(len(pool), 1))
    kept: list[np.ndarray] = []
    for part in (train, val):
        for c in range(len(class_names)):
            members = rng.permutation(part[y[part] == c])
            quota = int(np.floor(share * len(members)))
            kept.append(members[: max(quota, 1 if len(members) else 0)])
    picked = np.concatenate(kept)
    if len(picked) > n_structures:
        picked = np.sort(rng.permutation(picked)[:n_structures])
    train_rows = np.sort(np.intersect1d(picked, train))
    val_rows = np.sort(np.intersect1d(picked, val))
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ConfigError(
            f"{n_structures} synthetic structures leave {len(train_rows)} to train and "
            f"{len(val_rows)} to validate; use more structures"
        )
    return train_rows, val_rows, y


def bootstrap_std(
    y_true: np.ndarray,
    predictions: dict[str, np.ndarray],
    groups: np.ndarray,
    labels: Sequence[int],
    names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Standard deviation of each of :data:`SUMMARY_METRICS` over a bootstrap of groups.

    Each replicate draws as many groups (test structures) as there are, with replacement,
    takes every pattern of each drawn group (a group drawn twice counts twice) and computes
    :func:`~xrdpipe.evaluation.metrics.classification_metrics`; the same replicates serve
    every method. Sample standard deviation (``ddof=1``); NaN with fewer than 2 replicates.
    """
    g = np.asarray(groups)
    _, g = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(g == k) for k in range(int(g.max()) + 1 if len(g) else 0)]
    rng = np.random.default_rng(seed)
    values: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in SUMMARY_METRICS} for m in predictions
    }
    for _ in range(n_boot):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        for method, y_pred in predictions.items():
            metrics = classification_metrics(y_true[rows], y_pred[rows], labels, names)
            for k in SUMMARY_METRICS:
                values[method][k].append(float(metrics[k]))
    return {
        m: {k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in d.items()}
        for m, d in values.items()
    }


def structures_of(manifest: pd.DataFrame, rows: Sequence[int] | np.ndarray) -> list[Structure]:
    """The pymatgen structures of manifest rows (their ``structure_json``)."""
    if "structure_json" not in manifest.columns:
        raise ConfigError(
            f"the manifest has no structure_json column (columns: {list(manifest.columns)})"
        )
    column = manifest["structure_json"].to_numpy()
    return [Structure.from_dict(json.loads(column[i])) for i in rows]


def render_prepared(
    structures: Sequence[Structure],
    profile: ProfileConfig,
    draws: int,
    seed: int,
    stream: int,
) -> np.ndarray:
    """``draws`` measured-like renders of each structure, prepared as ``predict`` does.

    Row ``i * draws + d`` is draw ``d`` of structure ``i``; ``(len * draws, n_points)`` float32.
    """
    peaks = structure_peaks(list(structures), profile)
    return prepare_renders(render_structures(peaks, profile, draws, seed, stream=stream), profile)


def check_inputs(
    methods: Sequence[str],
    draws: int,
    test_draws: int,
    n_train: int,
    sets: dict[str, tuple[Sequence[Structure], np.ndarray]],
) -> None:
    """ConfigError: unknown methods, draws below 1, too many training patterns, bad sets.

    ``sets`` maps a name to (structures, labels); unequal or zero lengths are refused.
    """
    unknown = [m for m in methods if m not in ACNN_METHODS and m not in CLASSICAL_METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"methods {unknown or methods} not allowed; use {[*ACNN_METHODS, *CLASSICAL_METHODS]}"
        )
    if draws < 1 or test_draws < 1:
        raise ConfigError(f"draws ({draws}) and test_draws ({test_draws}) must be at least 1")
    if n_train > MAX_TRAINING_PATTERNS:
        raise ConfigError(
            f"{n_train} training patterns (structures x draws {draws}); at most "
            f"{MAX_TRAINING_PATTERNS}"
        )
    for name, (structures, labels) in sets.items():
        if len(structures) != len(labels) or len(structures) == 0:
            raise ConfigError(
                f"{len(labels)} {name} labels for {len(structures)} {name} structures"
            )


def synthetic_renders(
    train: Sequence[Structure],
    validation: Sequence[Structure],
    profile: ProfileConfig,
    draws: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Prepared measured-like renders of the synthetic training and validation structures."""
    x_fit = render_prepared(train, profile, draws, seed, SYNTHETIC_TRAIN_STREAM)
    x_val = render_prepared(validation, profile, draws, seed_for(seed, 1), SYNTHETIC_TRAIN_STREAM)
    return x_fit, x_val


def fit_methods(
    methods: Sequence[str],
    fit: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    class_names: Sequence[str],
    fold: int,
    *,
    profile: ProfileConfig,
    preset: ClassifierPreset,
    seed: int,
    n_bins: int,
    device: str | None,
    n_jobs: int | None,
    callbacks: Sequence[Callback],
    progress: bool,
) -> tuple[dict[str, MethodFold], dict[str, np.ndarray], dict[str, Any]]:
    """Fit every method on one training set and score it on one test set.

    The a-CNN (:func:`~xrdpipe.evaluation.cv.fit_predict_acnn`) trains on ``fit`` (patterns,
    labels) with early stopping on ``validation``; the classical methods
    (:func:`~xrdpipe.evaluation.cv.fit_predict_classical`) fit both, binned to ``n_bins``.

    Returns:
        ``(method -> MethodFold of fold number fold, method -> predictions, a-CNN configs)``.
    """
    (x_fit, y_fit), (x_val, y_val), (x_test, y) = fit, validation, test
    labels_idx = list(range(len(class_names)))
    if any(m in CLASSICAL_METHODS for m in methods):
        binned_train = bin_patterns(np.concatenate([x_fit, x_val]), n_bins).astype(np.float32)
        binned_test = bin_patterns(x_test, n_bins).astype(np.float32)
        y_train = np.concatenate([y_fit, y_val])
    results: dict[str, MethodFold] = {}
    predictions: dict[str, np.ndarray] = {}
    model_configs: dict[str, Any] = {}
    for method in methods:
        extra: dict[str, Any] = {}
        if method in ACNN_METHODS:
            model, y_pred, extra, fit_s, predict_s = fit_predict_acnn(
                method,
                x_fit,
                y_fit,
                x_val,
                y_val,
                x_test,
                len(class_names),
                preset,
                step_deg=profile.step_deg,
                two_theta_start=profile.two_theta_min,
                seed=seed_for(seed, fold, 1),
                device=device,
                callbacks=with_prefix(callbacks, f"{method}/fold{fold}/"),
                progress=progress,
            )
            model_configs[method] = config_to_dict(model.config)
        else:
            y_pred, fit_s, predict_s = fit_predict_classical(
                method, binned_train, y_train, binned_test, seed, n_jobs
            )
        predictions[method] = y_pred
        metrics = classification_metrics(y, y_pred, labels_idx, class_names)
        results[method] = MethodFold(method, fold, metrics, fit_s, predict_s, None, extra)
    return results, predictions, model_configs


def synthetic_to_real(
    train_structures: Sequence[Structure],
    train_labels: np.ndarray,
    validation_structures: Sequence[Structure],
    validation_labels: np.ndarray,
    test_structures: Sequence[Structure],
    test_labels: np.ndarray,
    class_names: Sequence[str],
    *,
    profile: ProfileConfig,
    preset: ClassifierPreset,
    methods: Sequence[str] = METHODS,
    draws: int = 4,
    test_draws: int = 10,
    seed: int = 0,
    n_bins: int = 450,
    n_boot: int = 1000,
    target: str = "",
    device: str | None = None,
    n_jobs: int | None = 1,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> SyntheticToRealResult:
    """Train every method on synthetic renders, test on renders of real structures.

    Args:
        train_structures: synthetic structures to train on.
        train_labels: their class indices.
        validation_structures: synthetic structures for the a-CNN's early stopping (the
            classical methods train on them too).
        validation_labels: their class indices.
        test_structures: the real structures.
        test_labels: their class indices (the labels of the other columns).
        class_names: the classes, in index order.
        profile: the grid of the table (the store's profile); rendered measured-like
            (:func:`~xrdpipe.evaluation.unseen.measured_like_profile`).
        preset: the a-CNN's settings (its ``max_minutes`` caps the one training).
        methods: names of :data:`~xrdpipe.evaluation.cv.ACNN_METHODS` and
            :data:`~xrdpipe.evaluation.estimators.CLASSICAL_METHODS`.
        draws: renders of each synthetic structure.
        test_draws: renders of each real structure.
        seed: renders, models, bootstrap.
        n_bins: windows of the classical methods.
        n_boot: bootstrap replicates of the std (0: no std, NaN).
        target: label name, recorded.
        device: a-CNN device.
        n_jobs: scikit-learn workers and threads.
        callbacks: a-CNN epoch records, with ``prefix = "<method>/"``.
        progress: tqdm bars of the a-CNN loop.

    Raises:
        ConfigError: unknown method, more than :data:`MAX_TRAINING_PATTERNS` training
            patterns, draws below 1, labels that do not match the structures.
    """
    start = time.perf_counter()
    n_train = (len(train_structures) + len(validation_structures)) * draws
    check_inputs(
        methods,
        draws,
        test_draws,
        n_train,
        {
            "train": (train_structures, train_labels),
            "validation": (validation_structures, validation_labels),
            "test": (test_structures, test_labels),
        },
    )
    measured = measured_like_profile(profile)
    t0 = time.perf_counter()
    x_fit, x_val = synthetic_renders(train_structures, validation_structures, measured, draws, seed)
    x_test = render_prepared(test_structures, measured, test_draws, seed, TEST_STREAM)
    render_s = time.perf_counter() - t0
    y_fit = np.repeat(np.asarray(train_labels, np.int64), draws)
    y_val = np.repeat(np.asarray(validation_labels, np.int64), draws)
    y = np.repeat(np.asarray(test_labels, np.int64), test_draws)
    names = [str(c) for c in class_names]
    test_all = np.arange(len(y))
    folds, predictions, model_configs = fit_methods(
        methods, (x_fit, y_fit), (x_val, y_val), (x_test, y), names, 0,
        profile=measured, preset=preset, seed=seed, n_bins=n_bins, device=device,
        n_jobs=n_jobs, callbacks=callbacks, progress=progress,
    )  # fmt: skip
    per_fold = {m: [folds[m]] for m in methods}
    labels_idx = list(range(len(class_names)))
    groups = np.repeat(np.arange(len(test_structures)), test_draws)
    std = bootstrap_std(y, predictions, groups, labels_idx, names, n_boot, seed_for(seed, 2))
    training = {
        "structures": len(train_structures),
        "validation_structures": len(validation_structures),
        "draws": draws,
        "patterns": n_train,
        "test_structures": len(test_structures),
        "test_draws": test_draws,
        "render_s": render_s,
    }
    config = {
        "protocol": PROTOCOL,
        "target": target,
        "class_names": names,
        "methods": list(methods),
        "seed": seed,
        "n_bins": n_bins,
        "n_boot": n_boot,
        "std": "bootstrap over test structures" if n_boot > 1 else "none",
        "train_stream": SYNTHETIC_TRAIN_STREAM,
        "test_stream": TEST_STREAM,
        "profile": measured.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "acnn_models": model_configs,
        **training,
    }
    empty = np.zeros(0, dtype=np.int64)
    return SyntheticToRealResult(
        protocol=PROTOCOL,
        target=target,
        class_names=names,
        methods=list(methods),
        folds=[Fold(0, empty, test_all)],
        y_true=y,
        predictions=predictions,
        per_fold=per_fold,
        pooled={m: per_fold[m][0].metrics for m in methods},
        n_materials=len(test_structures),
        n_strains=test_draws,
        config=config,
        wall_s=time.perf_counter() - start,
        bootstrap_std=std,
        n_boot=n_boot,
        training=training,
    )
