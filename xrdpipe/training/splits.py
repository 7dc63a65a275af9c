"""Splits of stored patterns for the classifiers: protocols, material splits, flattening."""

from __future__ import annotations

from typing import Literal

import numpy as np

from xrdpipe.training.labels import TaskError

Protocol = Literal["strain", "material"]
PROTOCOLS = ("strain", "material")


def material_split(
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


def flatten_strains(profiles: np.ndarray, y_mat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(M, S, n)`` profiles and per-material labels to ``(M*S, n)`` and ``(M*S,)``."""
    m, s, n = profiles.shape
    return profiles.reshape(m * s, n), np.repeat(y_mat, s)
