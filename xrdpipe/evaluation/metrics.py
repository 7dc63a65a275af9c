"""The project's metrics, in numpy: phase fractions (paper 002) and classification (paper 000).

Phase fractions: the total variation distance ``TVD(p, q) = 0.5 * sum_i |p_i - q_i|`` per
mixture (paper 002, equation 1: the share of the sample assigned to a wrong phase), summarised
over a test set by its mean, standard deviation, standard error of the mean, and the mean
absolute and root-mean-square errors over every (mixture, phase) entry.

Classification: accuracy, balanced accuracy (mean per-class recall over the classes present in
``y_true``), micro- and macro-F1, per-class precision and recall and the confusion matrix
(rows: true class, columns: predicted class), all from the confusion matrix. They agree with
scikit-learn's ``accuracy_score``, ``balanced_accuracy_score``, ``f1_score(average=...,
zero_division=0)``, ``precision_recall_fscore_support(zero_division=0)`` and
``confusion_matrix`` (checked in ``tests/evaluation/test_baselines.py``). A class that is
never predicted has precision 0 (and one never present has recall 0), silently: no warnings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _as_2d(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"{name} must be (n, N) or (N,), got shape {array.shape}")
    return array


def total_variation_distance(pred: Any, true: Any) -> np.ndarray:
    """Total variation distance ``0.5 * sum_i |p_i - q_i|`` of each sample.

    Args:
        pred: predicted phase fractions ``(n, N)`` (or one sample ``(N,)``).
        true: true phase fractions, same shape.

    Returns:
        ``(n,)`` float64 distances in [0, 1] for distributions.

    Raises:
        ValueError: the shapes differ.
    """
    p, q = _as_2d("pred", pred), _as_2d("true", true)
    if p.shape != q.shape:
        raise ValueError(f"pred has shape {p.shape} but true has shape {q.shape}")
    return 0.5 * np.abs(p - q).sum(axis=1)


def fraction_metrics(pred: Any, true: Any) -> dict[str, float]:
    """Summary of phase-fraction predictions over a test set.

    Args:
        pred: predicted phase fractions ``(n, N)``.
        true: true phase fractions ``(n, N)``.

    Returns:
        ``tvd_mean``, ``tvd_std`` (population, ``ddof=0``), ``tvd_sem`` (``std(ddof=1) /
        sqrt(n)``, 0 for one sample), ``mae`` and ``rmse`` (over all ``n * N`` entries).
    """
    p, q = _as_2d("pred", pred), _as_2d("true", true)
    tvd = total_variation_distance(p, q)
    n = tvd.size
    error = p - q
    return {
        "tvd_mean": float(tvd.mean()),
        "tvd_std": float(tvd.std()),
        "tvd_sem": float(tvd.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt(np.square(error).mean())),
    }


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with 0 where the denominator is 0 (no warnings)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def confusion(y_true: Any, y_pred: Any, labels: Sequence[Any]) -> np.ndarray:
    """Confusion matrix ``(C, C)`` int64 (rows: true class, columns: predicted class).

    Entry ``[i, j]`` counts true ``labels[i]`` predicted as ``labels[j]``; samples whose true
    or predicted label is not in ``labels`` are ignored.
    """
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true has shape {yt.shape} but y_pred has shape {yp.shape}")
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(f"labels {list(labels)} contain duplicates")
    ti = np.array([index.get(v, -1) for v in yt.tolist()], dtype=np.int64)
    pi = np.array([index.get(v, -1) for v in yp.tolist()], dtype=np.int64)
    keep = (ti >= 0) & (pi >= 0)
    c = len(labels)
    return np.bincount(ti[keep] * c + pi[keep], minlength=c * c).reshape(c, c)


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    labels: Sequence[Any],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, micro/macro F1, per-class precision and recall, confusion.

    Args:
        y_true: true labels ``(n,)`` (class indices or names).
        y_pred: predicted labels ``(n,)``.
        labels: the classes, in the order of the confusion matrix and of the macro average
            (a class in ``labels`` that never occurs still counts in the macro F1, as in
            scikit-learn with ``labels=``).
        class_names: names for the per-class dicts (default ``str(label)``).

    Returns:
        ``accuracy`` (over all samples), ``balanced_accuracy`` (mean recall over the classes
        present in ``y_true``), ``micro_f1``, ``macro_f1`` (floats), ``precision`` and
        ``recall`` (``{class name: float}``) and ``confusion`` (``(C, C)`` int64 ndarray).
    """
    names = [str(v) for v in labels] if class_names is None else [str(v) for v in class_names]
    if len(names) != len(labels):
        raise ValueError(f"{len(names)} class_names for {len(labels)} labels")
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(yt, yp, labels)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2.0 * tp, support + predicted)
    counted = support.sum() + predicted.sum()
    micro_f1 = float(2.0 * tp.sum() / counted) if counted > 0 else 0.0
    present = support > 0
    return {
        "accuracy": float((yt == yp).mean()) if yt.size else 0.0,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "micro_f1": micro_f1,
        "macro_f1": float(f1.mean()) if f1.size else 0.0,
        "precision": dict(zip(names, precision.tolist(), strict=True)),
        "recall": dict(zip(names, recall.tolist(), strict=True)),
        "confusion": cm,
    }
