"""Paper 000's table, ``synthetic+material`` column: synthetic crystals plus the COD folds.

Issue 18's second row: the ``material`` protocol (:func:`~xrdpipe.evaluation.folds.make_folds`
over the real structures) where every fold's training part is the synthetic training set of
:mod:`xrdpipe.evaluation.synthetic_to_real` **plus** the other folds' real structures. Every
pattern is measured-like and prepared as in that module; the real structures' training
renders come from :data:`REAL_TRAIN_STREAM`, their test renders from
:data:`~xrdpipe.evaluation.synthetic_to_real.TEST_STREAM`, the synthetic ones from
:data:`~xrdpipe.evaluation.synthetic_to_real.SYNTHETIC_TRAIN_STREAM`. The ± is the standard
deviation over folds, as in the ``strain`` and ``material`` columns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Structure

from xrdpipe.config import ClassifierPreset
from xrdpipe.evaluation.cv import METHODS, CVResult, MethodFold
from xrdpipe.evaluation.folds import make_folds
from xrdpipe.evaluation.metrics import classification_metrics
from xrdpipe.evaluation.synthetic_to_real import (
    SYNTHETIC_TRAIN_STREAM,
    TEST_STREAM,
    check_inputs,
    fit_methods,
    render_prepared,
    synthetic_renders,
)
from xrdpipe.evaluation.unseen import measured_like_profile
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.training.loop import Callback

PROTOCOL = "synthetic+material"
"""The protocol name (the table's column group)."""
REAL_TRAIN_STREAM = 0xC0D_7A1_3
"""Seed root of the real structures' training renders."""


def synthetic_plus_material(
    train_structures: Sequence[Structure],
    train_labels: np.ndarray,
    validation_structures: Sequence[Structure],
    validation_labels: np.ndarray,
    real_structures: Sequence[Structure],
    real_labels: np.ndarray,
    class_names: Sequence[str],
    *,
    profile: ProfileConfig,
    preset: ClassifierPreset,
    methods: Sequence[str] = METHODS,
    n_folds: int = 5,
    draws: int = 4,
    test_draws: int = 10,
    seed: int = 0,
    n_bins: int = 450,
    target: str = "",
    device: str | None = None,
    n_jobs: int | None = 1,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> CVResult:
    """The ``material`` folds over the real structures, each trained on synthetic plus COD.

    Folds: :func:`~xrdpipe.evaluation.folds.make_folds` (``material``) over the real
    structures. Fold ``k`` trains on the synthetic renders and on ``draws`` renders of the
    other folds' real structures (seed root :data:`REAL_TRAIN_STREAM`), and tests on the
    ``test_draws`` renders of its own (:data:`TEST_STREAM`); the a-CNN stops early on the
    synthetic validation structures. Mean ± std over folds, as the other CV columns.
    Arguments as :func:`~xrdpipe.evaluation.synthetic_to_real.synthetic_to_real`; at most
    :data:`~xrdpipe.evaluation.synthetic_to_real.MAX_TRAINING_PATTERNS` synthetic plus real
    training patterns.
    """
    start = time.perf_counter()
    n_synthetic = (len(train_structures) + len(validation_structures)) * draws
    check_inputs(
        methods,
        draws,
        test_draws,
        n_synthetic + len(real_structures) * draws,
        {
            "train": (train_structures, train_labels),
            "validation": (validation_structures, validation_labels),
            "real": (real_structures, real_labels),
        },
    )
    measured = measured_like_profile(profile)
    t0 = time.perf_counter()
    x_syn, x_val = synthetic_renders(train_structures, validation_structures, measured, draws, seed)
    x_real = render_prepared(real_structures, measured, draws, seed, REAL_TRAIN_STREAM)
    x_test = render_prepared(real_structures, measured, test_draws, seed, TEST_STREAM)
    render_s = time.perf_counter() - t0
    y_syn = np.repeat(np.asarray(train_labels, np.int64), draws)
    y_val = np.repeat(np.asarray(validation_labels, np.int64), draws)
    y_mat = np.asarray(real_labels, np.int64)
    y_real, y = np.repeat(y_mat, draws), np.repeat(y_mat, test_draws)
    names = [str(c) for c in class_names]
    folds = make_folds(y_mat, test_draws, "material", n_folds, seed)
    per_fold: dict[str, list[MethodFold]] = {m: [] for m in methods}
    predictions = {m: np.full(len(y), -1, dtype=np.int64) for m in methods}
    model_configs: dict[str, Any] = {}
    for fold in folds:
        structures = np.unique(fold.train // test_draws)
        rows = (structures[:, None] * draws + np.arange(draws)).ravel()
        results, fold_predictions, model_configs = fit_methods(
            methods,
            (np.concatenate([x_syn, x_real[rows]]), np.concatenate([y_syn, y_real[rows]])),
            (x_val, y_val),
            (x_test[fold.test], y[fold.test]),
            names,
            fold.index,
            profile=measured, preset=preset, seed=seed, n_bins=n_bins, device=device,
            n_jobs=n_jobs, callbacks=callbacks, progress=progress,
        )  # fmt: skip
        for method in methods:
            per_fold[method].append(results[method])
            predictions[method][fold.test] = fold_predictions[method]
    labels_idx = list(range(len(class_names)))
    config = {
        "protocol": PROTOCOL,
        "target": target,
        "class_names": names,
        "methods": list(methods),
        "n_folds": n_folds,
        "seed": seed,
        "n_bins": n_bins,
        "structures": len(train_structures),
        "validation_structures": len(validation_structures),
        "draws": draws,
        "patterns": n_synthetic,
        "real_structures": len(real_structures),
        "test_draws": test_draws,
        "render_s": render_s,
        "streams": {
            "synthetic": SYNTHETIC_TRAIN_STREAM,
            "real_train": REAL_TRAIN_STREAM,
            "test": TEST_STREAM,
        },
        "profile": measured.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "acnn_models": model_configs,
    }
    return CVResult(
        protocol=PROTOCOL,
        target=target,
        class_names=names,
        methods=list(methods),
        folds=folds,
        y_true=y,
        predictions=predictions,
        per_fold=per_fold,
        pooled={m: classification_metrics(y, predictions[m], labels_idx, names) for m in methods},
        n_materials=len(real_structures),
        n_strains=test_draws,
        config=config,
        wall_s=time.perf_counter() - start,
    )
