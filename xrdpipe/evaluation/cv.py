"""Cross-validated comparison of paper 000's a-CNN with eight classical classifiers.

Paper 000 reports 5-fold cross-validation accuracies (and micro-F1) of the a-CNN and of Naive
Bayes, k-nearest neighbours, logistic regression, random forest, decision tree, SVM, gradient
boosting and an MLP on the same patterns. :func:`cross_validate_classifiers` repeats that
comparison on the store's rendered single-phase profiles:

1. Strain conditions are subsampled to ``max_strains_per_material`` per material (the first
   ones: they are independent random draws), and the ``(M, S, n_points)`` profiles are
   flattened to ``M * S`` patterns labelled by their material's class.
2. Folds are drawn once (:func:`~xrdpipe.evaluation.folds.make_folds`, protocols ``strain``
   and ``material``) and shared by every method.
3. Each method is fitted on the training part of a fold and predicts its test part. The
   a-CNN (:func:`~xrdpipe.training.classifier.fit_acnn`) sees the full-resolution profiles
   and trains with the project's loop (:func:`~xrdpipe.training.loop.train`) and a classifier
   preset; its early-stopping validation set is carved out of the training part by the same
   protocol (:func:`~xrdpipe.evaluation.folds.validation_part`: held-out strain conditions, or
   held-out materials); it predicts with :func:`predict_acnn`
   (:func:`~xrdpipe.training.inference.predict_batched`). The classical methods
   (:func:`~xrdpipe.evaluation.estimators.classical_estimator`) see the patterns averaged
   into ``n_bins`` (about 450) windows and are fitted on the whole training part; those that
   need it are standardised in a ``Pipeline``.
4. Metrics (:func:`~xrdpipe.evaluation.metrics.classification_metrics`) per fold and on the
   pooled out-of-fold predictions (each pattern is tested exactly once); mean and standard
   deviation over folds in :meth:`CVResult.summary` and
   :func:`~xrdpipe.evaluation.tables.classification_table`, beside the paper's reported
   figures (:data:`~xrdpipe.evaluation.tables.PAPER_000_REPORTED`).

Nothing here imports MLflow or Prefect or reads a store;
:func:`xrdpipe.stages.classifiers.run_classification_evaluation` reads one, for the evaluate
flow and the CLI.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from xrdpipe.config import ClassifierPreset
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.estimators import CLASSICAL_METHODS, classical_estimator
from xrdpipe.evaluation.folds import Fold, make_folds, validation_part
from xrdpipe.evaluation.metrics import classification_metrics
from xrdpipe.evaluation.tables import SUMMARY_METRICS
from xrdpipe.models import ACNN, class_activation_maps, config_to_dict
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.classifier import fit_acnn
from xrdpipe.training.inference import predict_batched
from xrdpipe.training.loop import Callback
from xrdpipe.training.seeds import seed_for
from xrdpipe.training.splits import Protocol, bin_patterns

ACNN_METHODS: dict[str, str | None] = {
    "acnn": None,
    "acnn_position_channel": "position_channel",
    "acnn_paper": "paper",
    "acnn_binned": "binned",
}
"""a-CNN method names -> preset variant (``None``: the preset's first variant)."""

METHODS = ("acnn", *CLASSICAL_METHODS)
"""The default comparison: the a-CNN (the preset's first variant) and the eight baselines."""


# --- a-CNN inference ----------------------------------------------------------------------


def predict_acnn(model: ACNN, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of patterns ``(n, n_points)``, float32.

    :func:`~xrdpipe.training.inference.predict_batched` of the model's ``predict`` in eval
    mode, on the model's device.
    """
    model.eval()
    device = next(model.parameters()).device
    return predict_batched(model.predict, x, batch, device, model.config.n_classes).numpy()


def acnn_cams(
    model: ACNN, x: np.ndarray, class_index: np.ndarray | None = None, batch: int = 512
) -> np.ndarray:
    """Class activation maps ``(n, n_points)`` of patterns ``x`` for ``class_index``.

    Batched :func:`~xrdpipe.models.acnn.class_activation_maps`; ``class_index`` ``(n,)``
    defaults to the predicted classes.
    """
    device = next(model.parameters()).device
    maps = []
    for i in range(0, len(x), batch):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch], np.float32)).to(device)
        cls = None if class_index is None else torch.as_tensor(class_index[i : i + batch])
        maps.append(class_activation_maps(model, xb, cls).cpu().numpy())
    return np.concatenate(maps) if maps else np.zeros((0, model.config.n_points), np.float32)


# --- cross-validation ------------------------------------------------------------------------


@dataclass
class MethodFold:
    """One method on one fold.

    Attributes:
        method: the method name.
        fold: fold number.
        metrics: :func:`~xrdpipe.evaluation.metrics.classification_metrics` of its test part.
        fit_s: seconds to fit.
        predict_s: seconds to predict the test part.
        model: the trained a-CNN (a-CNN methods with ``keep_models``), on the CPU.
        extra: method details (a-CNN: best epoch, stop reason, epochs run).
    """

    method: str
    fold: int
    metrics: dict[str, Any]
    fit_s: float
    predict_s: float
    model: ACNN | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CVResult:
    """What :func:`cross_validate_classifiers` returns for one protocol.

    Attributes:
        protocol: ``strain`` or ``material``.
        target: the label (``lattice_system``...; informative).
        class_names: the classes, in index order.
        methods: methods in run order.
        folds: the folds every method used.
        y_true: ``(M * S)`` class index of every pattern.
        predictions: method -> ``(M * S)`` out-of-fold predicted class of every pattern.
        per_fold: method -> one :class:`MethodFold` per fold.
        pooled: method -> metrics of the pooled out-of-fold predictions.
        n_materials: materials ``M``.
        n_strains: strain conditions per material ``S`` (after subsampling).
        config: the full resolved configuration (JSON-ready).
        wall_s: wall time.
    """

    protocol: str
    target: str
    class_names: list[str]
    methods: list[str]
    folds: list[Fold]
    y_true: np.ndarray
    predictions: dict[str, np.ndarray]
    per_fold: dict[str, list[MethodFold]]
    pooled: dict[str, dict[str, Any]]
    n_materials: int
    n_strains: int
    config: dict[str, Any]
    wall_s: float

    def material_of(self, index: np.ndarray) -> np.ndarray:
        """Material index of pattern indices."""
        return np.asarray(index) // self.n_strains

    def fold_frame(self) -> pd.DataFrame:
        """Long table: one row per (method, fold) with the scalar metrics and times."""
        rows = [
            {
                "method": mf.method,
                "fold": mf.fold,
                **{m: float(mf.metrics[m]) for m in SUMMARY_METRICS},
                "fit_s": mf.fit_s,
                "predict_s": mf.predict_s,
            }
            for folds in self.per_fold.values()
            for mf in folds
        ]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """One row per method: mean and std over folds of :data:`SUMMARY_METRICS`, fit time.

        Columns ``<metric>_mean``, ``<metric>_std`` (sample std, ``ddof=1``) and
        ``fit_s_mean``; the index is the method name, in run order.
        """
        frame = self.fold_frame()
        grouped = frame.groupby("method", sort=False)
        out = pd.DataFrame(index=pd.Index(self.methods, name="method"))
        for metric in (*SUMMARY_METRICS, "fit_s"):
            out[f"{metric}_mean"] = grouped[metric].mean()
            if metric != "fit_s":
                out[f"{metric}_std"] = grouped[metric].std(ddof=1)
        return out

    def metrics(self) -> dict[str, float]:
        """Flat summary metrics ``<method>/<metric>_{mean,std}`` (for a tracking run)."""
        summary = self.summary()
        return {
            f"{method}/{column}": float(value)
            for method, row in summary.iterrows()
            for column, value in row.items()
        }


@contextlib.contextmanager
def _thread_limit(n_jobs: int | None) -> Iterator[None]:
    """Cap OpenMP and BLAS threads at ``n_jobs`` (``None``: leave the libraries' defaults).

    On a shared two-core machine, gradient boosting with two OpenMP threads that compete
    with other processes ran 5x slower than with one (measured: 59 s against 12 s a fold).
    """
    if n_jobs is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, n_jobs)):
        yield


def _class_indices(labels: Sequence[Any] | np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        y = labels.astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise ConfigError(
                f"class indices span [{y.min()}, {y.max()}] but there are {len(class_names)} "
                "class_names"
            )
        return y
    index = {str(c): i for i, c in enumerate(class_names)}
    unknown = sorted({str(v) for v in labels} - set(index))
    if unknown:
        raise ConfigError(f"labels {unknown[:5]} are not among class_names {list(class_names)}")
    return np.array([index[str(v)] for v in labels], dtype=np.int64)


def fit_predict_classical(
    method: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    seed: int,
    n_jobs: int | None = 1,
) -> tuple[np.ndarray, float, float]:
    """Fit one classical method on (binned) patterns and predict others.

    :func:`~xrdpipe.evaluation.estimators.classical_estimator` under ``n_jobs`` OpenMP/BLAS
    threads, convergence warnings of capped iterations silenced.

    Returns:
        ``(predicted class indices, fit seconds, predict seconds)``.
    """
    t0 = time.perf_counter()
    estimator = classical_estimator(method, seed, n_jobs)
    with _thread_limit(n_jobs), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of capped iterations
        estimator.fit(x_train, y_train)
        t1 = time.perf_counter()
        y_pred = np.asarray(estimator.predict(x_test), dtype=np.int64)
    return y_pred, t1 - t0, time.perf_counter() - t1


def fit_predict_acnn(
    method: str,
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    preset: ClassifierPreset,
    *,
    step_deg: float = 1.0,
    two_theta_start: float | None = None,
    seed: int = 0,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> tuple[ACNN, np.ndarray, dict[str, Any], float, float]:
    """Train one a-CNN method (:data:`ACNN_METHODS`) and predict ``x_test``.

    :func:`~xrdpipe.training.classifier.fit_acnn` with early stopping on ``(x_val, y_val)``,
    then :func:`predict_acnn`.

    Returns:
        ``(model, predicted class indices, details, fit seconds, predict seconds)``; the
        details are the best epoch, epochs run, stop reason, variant and validation size.
    """
    t0 = time.perf_counter()
    model, result = fit_acnn(
        x_fit,
        y_fit,
        x_val,
        y_val,
        n_classes,
        preset,
        variant=ACNN_METHODS[method],
        step_deg=step_deg,
        two_theta_start=two_theta_start,
        seed=seed,
        device=device,
        callbacks=callbacks,
        progress=progress,
    )
    t1 = time.perf_counter()
    y_pred = predict_acnn(model, x_test).argmax(axis=1)
    extra = {
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "stop_reason": result.stop_reason,
        "variant": ACNN_METHODS[method] or preset.model.variants[0],
        "n_validation": int(len(y_val)),
    }
    return model, y_pred, extra, t1 - t0, time.perf_counter() - t1


def cross_validate_classifiers(
    profiles: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    class_names: Sequence[str],
    protocol: Protocol = "strain",
    *,
    n_folds: int = 5,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    preset: ClassifierPreset,
    two_theta: np.ndarray | None = None,
    n_bins: int = 450,
    max_strains_per_material: int | None = None,
    target: str = "",
    device: str | None = None,
    n_jobs: int | None = 1,
    keep_models: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> CVResult:
    """K-fold cross-validation of the a-CNN and the classical baselines on identical folds.

    Args:
        profiles: ``(M, S, n_points)`` single-phase profiles (normalised to a maximum of 1).
        labels: ``(M,)`` class per material: indices into ``class_names`` or the names.
        class_names: the classes, in index order.
        protocol: ``strain`` or ``material`` (see
            :func:`~xrdpipe.evaluation.folds.make_folds`).
        n_folds: folds.
        methods: names of :data:`ACNN_METHODS` and :data:`CLASSICAL_METHODS`, in run order.
        seed: seed of the folds, the validation split, the models.
        preset: a-CNN training settings (epochs, minutes, batch, lr, augmentation,
            ``validation_fraction``).
        two_theta: the grid, degrees (its step sizes the augmentations; default step 1).
        n_bins: windows the classical methods see.
        max_strains_per_material: use the first ``S'`` strain conditions of each material.
        target: label name, recorded.
        device: a-CNN device (overrides ``preset.train.device``).
        n_jobs: scikit-learn workers (random forest, k-NN) and the OpenMP/BLAS threads of
            the classical fits (``None``: the libraries' defaults, every core).
        keep_models: keep each fold's a-CNN (on the CPU) for class activation maps.
        callbacks: a-CNN epoch records, with ``prefix = "<method>/fold<k>/"``.
        progress: tqdm bars of the a-CNN loop.

    Returns:
        The :class:`CVResult`.

    Raises:
        ConfigError: unknown method or protocol, shapes that do not match, too few
            strains or materials for ``n_folds``.
    """
    start = time.perf_counter()
    unknown = [m for m in methods if m not in ACNN_METHODS and m not in CLASSICAL_METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"methods {unknown or methods} not allowed; use {[*ACNN_METHODS, *CLASSICAL_METHODS]}"
        )
    profiles = np.asarray(profiles)
    if profiles.ndim != 3:
        raise ConfigError(f"profiles must be (materials, strains, n_points), got {profiles.shape}")
    y_mat = _class_indices(labels, class_names)
    if len(y_mat) != profiles.shape[0]:
        raise ConfigError(f"{len(y_mat)} labels for {profiles.shape[0]} materials")
    if max_strains_per_material is not None:
        profiles = profiles[:, :max_strains_per_material]
    n_materials, n_strains, n_points = profiles.shape
    x = profiles.reshape(n_materials * n_strains, n_points)
    y = np.repeat(y_mat, n_strains)
    folds = make_folds(y_mat, n_strains, protocol, n_folds, seed)
    labels_idx = list(range(len(class_names)))
    names = [str(c) for c in class_names]
    step_deg = float(two_theta[1] - two_theta[0]) if two_theta is not None else 1.0
    two_theta_start = float(two_theta[0]) if two_theta is not None else None
    binned = (
        bin_patterns(x, n_bins).astype(np.float32)
        if any(m in CLASSICAL_METHODS for m in methods)
        else None
    )

    per_fold: dict[str, list[MethodFold]] = {m: [] for m in methods}
    predictions = {m: np.full(len(y), -1, dtype=np.int64) for m in methods}
    for fold in folds:
        fit_idx, val_idx = validation_part(
            fold.train,
            n_strains,
            protocol,
            preset.split.validation_fraction,
            seed_for(seed, fold.index),
        )
        for method in methods:
            model: ACNN | None = None
            extra: dict[str, Any] = {}
            if method in ACNN_METHODS:
                model, y_pred, extra, fit_s, predict_s = fit_predict_acnn(
                    method,
                    x[fit_idx],
                    y[fit_idx],
                    x[val_idx],
                    y[val_idx],
                    x[fold.test],
                    len(class_names),
                    preset,
                    step_deg=step_deg,
                    two_theta_start=two_theta_start,
                    seed=seed_for(seed, fold.index, 1),
                    device=device,
                    callbacks=with_prefix(callbacks, f"{method}/fold{fold.index}/"),
                    progress=progress,
                )
                model = model.cpu() if keep_models else None
            else:
                assert binned is not None
                y_pred, fit_s, predict_s = fit_predict_classical(
                    method, binned[fold.train], y[fold.train], binned[fold.test], seed, n_jobs
                )
            predictions[method][fold.test] = y_pred
            per_fold[method].append(
                MethodFold(
                    method=method,
                    fold=fold.index,
                    metrics=classification_metrics(y[fold.test], y_pred, labels_idx, names),
                    fit_s=fit_s,
                    predict_s=predict_s,
                    model=model,
                    extra=extra,
                )
            )
    pooled = {m: classification_metrics(y, predictions[m], labels_idx, names) for m in methods}
    config = {
        "protocol": protocol,
        "target": target,
        "class_names": [str(c) for c in class_names],
        "methods": list(methods),
        "n_folds": n_folds,
        "seed": seed,
        "n_bins": n_bins,
        "n_materials": n_materials,
        "n_strains": n_strains,
        "n_points": n_points,
        "max_strains_per_material": max_strains_per_material,
        "preset": preset.model_dump(mode="json"),
        "acnn_models": {
            m: config_to_dict(per_fold[m][0].model.config)
            for m in methods
            if m in ACNN_METHODS and per_fold[m] and per_fold[m][0].model is not None
        },
    }
    return CVResult(
        protocol=protocol,
        target=target,
        class_names=[str(c) for c in class_names],
        methods=list(methods),
        folds=folds,
        y_true=y,
        predictions=predictions,
        per_fold=per_fold,
        pooled=pooled,
        n_materials=n_materials,
        n_strains=n_strains,
        config=config,
        wall_s=time.perf_counter() - start,
    )
