"""Calibrated class probabilities: temperature scaling and the expected calibration error.

Temperature scaling (Guo et al., ICML 2017) divides a classifier's logits by one scalar
``T > 0`` fitted on validation logits by minimising the negative log-likelihood
(:func:`fit_temperature`, a bounded scalar minimisation over ``log T``); the predicted class
does not change, only the confidence. Since ``softmax(log p / T) = softmax(z / T)`` for
``p = softmax(z)``, the temperature can be applied to probabilities as well as to logits
(:func:`calibrated_probabilities`).

The expected calibration error (:func:`expected_calibration_error`) sorts the samples by
confidence (the maximum probability) into ``n_bins`` bins of equal mass (bin ``b`` holds
samples ``[floor(b n / B), floor((b + 1) n / B))`` of the sorted order) and averages the
gap between each bin's mean confidence and its accuracy, weighted by the bin's share of the
samples: ``ECE = sum_b (n_b / n) |acc_b - conf_b|``. :func:`ece_interval` adds a bootstrap
percentile interval over samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The range the fitted temperature is searched in (``log T`` bounded accordingly)."""
ECE_BINS = 10
"""Equal-mass bins of the expected calibration error."""


def _logits(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(f"{name} must be (n, C) with C >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _labels(values: Any, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(values, dtype=np.int64)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be class indices in [0, {n_classes}), got {y.min()}..")
    return y


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = _logits("logits", logits)
    y = _labels(labels, len(z), z.shape[1])
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp = log_softmax(z / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature minimising the validation NLL (bounded search over ``log T``).

    Args:
        logits: validation logits ``(n, C)`` (log-probabilities work the same).
        labels: true class indices ``(n,)``.

    Returns:
        ``T`` in :data:`TEMPERATURE_BOUNDS`; ``T > 1`` softens an over-confident model.
    """
    z = _logits("logits", logits)
    y = _labels(labels, len(z), z.shape[1])
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one validation sample")
    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: nll(z, y, math.exp(log_t)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def calibrated_probabilities(scores: Any, temperature: float, *, are_logits: bool = True) -> Any:
    """``softmax(logits / T)``; with ``are_logits=False``, ``scores`` are probabilities.

    Probabilities ``p`` are tempered as ``p ** (1 / T)`` renormalised, which equals
    ``softmax(z / T)`` for ``p = softmax(z)``.
    """
    if not np.all(np.asarray(temperature) > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(scores, dtype=np.float64)
    if not are_logits:
        z = np.log(np.clip(z, 1e-300, None))
    return softmax(z / temperature, axis=-1)


def equal_mass_bins(n: int, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index ``(n,)`` of each position of the confidence-sorted order (equal mass)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = (np.arange(n_bins + 1) * n) // n_bins
    return np.searchsorted(edges, np.arange(n), side="right") - 1


def _ece_sorted(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    n = len(confidence)
    bins = equal_mass_bins(n, n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(acc - conf).sum() / n) if n else 0.0


def expected_calibration_error(probabilities: Any, labels: Any, n_bins: int = ECE_BINS) -> float:
    """ECE with ``n_bins`` equal-mass bins of the maximum probability (module docstring).

    Args:
        probabilities: ``(n, C)`` class probabilities (rows summing to 1).
        labels: true class indices ``(n,)``.
        n_bins: bins (equal mass; ties in confidence are ordered stably by sample).
    """
    p = _logits("probabilities", probabilities)
    y = _labels(labels, len(p), p.shape[1])
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    return _ece_sorted(confidence[order], correct[order], n_bins)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap percentile interval."""

    value: float
    low: float
    high: float
    level: float = 0.95

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level}


def ece_interval(
    probabilities: Any,
    labels: Any,
    n_bins: int = ECE_BINS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The ECE and its bootstrap percentile interval (samples resampled with replacement)."""
    p = _logits("probabilities", probabilities)
    y = _labels(labels, len(p), p.shape[1])
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    value = expected_calibration_error(p, y, n_bins)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        c = confidence[idx]
        order = np.argsort(c, kind="stable")
        draws[b] = _ece_sorted(c[order], correct[idx][order], n_bins)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Interval(value, float(low), float(high), level)


def reliability(probabilities: Any, labels: Any, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per equal-mass bin: mean confidence, accuracy and count (the reliability diagram)."""
    p = _logits("probabilities", probabilities)
    y = _labels(labels, len(p), p.shape[1])
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    bins = equal_mass_bins(len(y), n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    safe = np.maximum(counts, 1)
    conf = np.bincount(bins, weights=confidence[order], minlength=n_bins) / safe
    acc = np.bincount(bins, weights=correct[order], minlength=n_bins) / safe
    return {"confidence": conf.tolist(), "accuracy": acc.tolist(), "count": counts.tolist()}
