"""Cross-validation folds of paper 000's comparison, shared by every method.

Folds are drawn once (:func:`make_folds`) over ``M`` materials x ``S`` strain conditions and
shared by every method:

* ``strain`` (paper 000's setting): each material's strain conditions are permuted (seeded)
  and dealt into ``n_folds`` groups; fold ``k`` tests on group ``k`` of *every* material, so
  all materials are seen in training and in testing.
* ``material`` (material-disjoint): the materials are split by a stratified k-fold over
  their classes (a ``StratifiedGroupKFold`` with one group per material and equal group
  sizes); no material is ever in both parts of a fold.

:func:`validation_part` carves the a-CNN's early-stopping validation set out of a fold's
training part by the same protocol (held-out strain conditions, or held-out materials).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from xrdpipe.errors import ConfigError
from xrdpipe.training.splits import PROTOCOLS, Protocol


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: indices into the flattened ``(M * S)`` patterns.

    Attributes:
        index: 0-based fold number.
        train: training pattern indices (sorted).
        test: test pattern indices (sorted).
    """

    index: int
    train: np.ndarray
    test: np.ndarray


def make_folds(
    labels: np.ndarray, n_strains: int, protocol: Protocol, n_folds: int = 5, seed: int = 0
) -> list[Fold]:
    """The ``n_folds`` folds of one protocol over ``M`` materials x ``n_strains`` patterns.

    Pattern ``i`` is material ``i // n_strains``, strain ``i % n_strains`` (the row order of
    ``profiles.reshape(M * S, n)``). The test parts partition all patterns.

    Args:
        labels: ``(M,)`` class index of each material (stratifies the ``material`` folds).
        n_strains: strain conditions per material ``S``.
        protocol: ``strain`` (every material in every fold's training and test part) or
            ``material`` (material-disjoint, stratified by class).
        n_folds: folds (paper 000: 5).
        seed: permutation seed.

    Raises:
        ConfigError: unknown protocol, or fewer strains (``strain``) or materials
            (``material``) than folds.
    """
    labels = np.asarray(labels)
    n_materials = len(labels)
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} is not one of {list(PROTOCOLS)}")
    if n_folds < 2:
        raise ConfigError(f"{n_folds=} must be >= 2")
    fold_of = np.empty((n_materials, n_strains), dtype=np.int64)
    if protocol == "strain":
        if n_strains < n_folds:
            raise ConfigError(
                f"protocol 'strain' needs at least n_folds={n_folds} strain conditions per "
                f"material, got {n_strains}"
            )
        rng = np.random.default_rng(seed)
        for m in range(n_materials):
            fold_of[m, rng.permutation(n_strains)] = np.arange(n_strains) % n_folds
    else:
        if n_materials < n_folds:
            raise ConfigError(
                f"protocol 'material' needs at least n_folds={n_folds} materials, got {n_materials}"
            )
        fold_of[:] = _material_fold_of(labels, n_folds, seed)[:, None]
    flat = fold_of.reshape(-1)
    return [Fold(k, np.flatnonzero(flat != k), np.flatnonzero(flat == k)) for k in range(n_folds)]


def _material_fold_of(labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold of each material: stratified by class when some class fills every fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    _, counts = np.unique(labels, return_counts=True)
    splitter: KFold | StratifiedKFold
    if counts.max() >= n_folds:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed % 2**32)
    else:  # no class fills every fold: plain shuffled folds
        splitter = KFold(n_folds, shuffle=True, random_state=seed % 2**32)
    fold_of = np.empty(len(labels), dtype=np.int64)
    with warnings.catch_warnings():  # "the least populated class has only n members"
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold_of[test] = k
    return fold_of


def validation_part(
    train_idx: np.ndarray, n_strains: int, protocol: Protocol, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training indices into (fit, validation) by the fold's protocol."""
    rng = np.random.default_rng(seed)
    materials = np.unique(train_idx // n_strains)
    if protocol == "material" and len(materials) >= 3:
        n_val = max(1, int(round(fraction * len(materials))))
        held = rng.permutation(materials)[:n_val]
        is_val = np.isin(train_idx // n_strains, held)
    else:  # held-out strain conditions of every training material
        is_val = np.zeros(len(train_idx), dtype=bool)
        is_val[rng.permutation(len(train_idx))[: max(1, int(round(fraction * len(train_idx))))]] = (
            True
        )
    return train_idx[~is_val], train_idx[is_val]
