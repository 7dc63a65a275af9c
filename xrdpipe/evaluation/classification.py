"""Cross-validated comparison of paper 000's a-CNN with eight classical classifiers.

Paper 000 reports 5-fold cross-validation accuracies (and micro-F1) of the a-CNN and of Naive
Bayes, k-nearest neighbours, logistic regression, random forest, decision tree, SVM, gradient
boosting and an MLP on the same patterns. :func:`cross_validate_classifiers` repeats that
comparison on the store's rendered single-phase profiles:

1. Strain conditions are subsampled to ``max_strains_per_material`` per material (the first
   ones: they are independent random draws), and the ``(M, S, n_points)`` profiles are
   flattened to ``M * S`` patterns labelled by their material's class.
2. Folds are drawn once (:func:`make_folds`) and shared by every method:

   * ``strain`` (paper 000's setting): each material's strain conditions are permuted (seeded)
     and dealt into ``n_folds`` groups; fold ``k`` tests on group ``k`` of *every* material, so
     all materials are seen in training and in testing.
   * ``material`` (material-disjoint): the materials are split by a stratified k-fold over
     their classes (a ``StratifiedGroupKFold`` with one group per material and equal group
     sizes); no material is ever in both parts of a fold.

3. Each method is fitted on the training part of a fold and predicts its test part. The
   a-CNN (:func:`fit_acnn`) sees the full-resolution profiles and trains with the project's
   loop (:func:`~xrdpipe.training.loop.train`) and a classifier preset; its early-stopping
   validation set is carved out of the training part by the same protocol (held-out strain
   conditions, or held-out materials). The classical methods (:func:`classical_estimator`)
   see the patterns averaged into ``n_bins`` (about 450) windows and are fitted on the whole
   training part; those that need it are standardised in a ``Pipeline``.
4. Metrics (:func:`~xrdpipe.evaluation.metrics.classification_metrics`) per fold and on the
   pooled out-of-fold predictions (each pattern is tested exactly once); mean and standard
   deviation over folds in :meth:`CVResult.summary` and :func:`classification_table`, beside
   the paper's reported figures (:data:`PAPER_000_REPORTED`).

Nothing here imports MLflow or Prefect; :func:`run_classification_evaluation` is the one
function that reads a store, for the evaluate flow and the CLI.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xrdpipe import store
from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.errors import ConfigError, StoreError
from xrdpipe.evaluation.metrics import classification_metrics
from xrdpipe.models import ACNN, class_activation_maps, config_to_dict
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.datasets import load_profiles
from xrdpipe.store import store_identity
from xrdpipe.training.callbacks import with_prefix
from xrdpipe.training.classifier import fit_acnn
from xrdpipe.training.labels import Target, TaskError, class_order
from xrdpipe.training.labels import labels as target_labels
from xrdpipe.training.loop import Callback
from xrdpipe.training.seeds import seed_for
from xrdpipe.training.splits import PROTOCOLS, Protocol, bin_patterns

ACNN_METHODS: dict[str, str | None] = {
    "acnn": None,
    "acnn_position_channel": "position_channel",
    "acnn_paper": "paper",
    "acnn_binned": "binned",
}
"""a-CNN method names -> preset variant (``None``: the preset's first variant)."""

CLASSICAL_METHODS = (
    "naive_bayes",
    "knn",
    "logistic_regression",
    "random_forest",
    "decision_tree",
    "svm",
    "gradient_boosting",
    "mlp",
)
"""The classical baselines of paper 000, in its order (scikit-learn)."""

METHODS = ("acnn", *CLASSICAL_METHODS)
"""The default comparison: the a-CNN (the preset's first variant) and the eight baselines."""

METHOD_LABELS: dict[str, str] = {
    "acnn": "a-CNN",
    "acnn_position_channel": "a-CNN (position channel)",
    "acnn_paper": "a-CNN (paper)",
    "acnn_binned": "a-CNN (binned)",
    "naive_bayes": "Naive Bayes (Gaussian)",
    "knn": "k-nearest neighbours",
    "logistic_regression": "Logistic regression",
    "random_forest": "Random forest",
    "decision_tree": "Decision tree",
    "svm": "SVM (RBF)",
    "gradient_boosting": "Gradient boosting",
    "mlp": "MLP",
}
"""Display names of the methods (table rows, plot titles)."""

SUMMARY_METRICS = ("accuracy", "micro_f1", "macro_f1", "balanced_accuracy")
"""Scalar metrics averaged over folds."""
TABLE_METRICS = ("accuracy", "micro_f1", "macro_f1")
"""Metrics of :func:`classification_table`."""

CV_PRESET = ClassifierPreset(
    variants=("binned",),
    batch_size=128,
    lr=5e-3,
    epochs=60,
    early_stopping_patience=10,
    max_minutes=0.75,
    augment=False,
    validation_fraction=0.15,
    rf_trees=100,
    device="auto",
    num_threads=1,
)
"""Default a-CNN preset of a fold: the ``binned`` variant (the best of the three on ``acnn``
in issue 5's comparison), ``cpu``-like, capped at 45 s of training per fold, so the
9 x 5 x 2 table on ~200 materials x 40 strains takes minutes on two cores (see
docs/evaluation.md). One torch thread: on a shared two-core machine two threads that compete
with other processes run up to 7x slower (measured), while an idle machine loses under 2x.
Pass the catalog's ``paper`` preset for the paper's full training."""

# Paper 000 ("See Deeper"), figures quoted in its text. Figures 5-7 (bar charts of the
# cross-validation accuracy for crystal systems and space groups, and micro-F1 per
# classifier) are images without numbers in our copy, so logistic regression, the MLP and
# every baseline F1 are missing (NaN). The paper treats "crystal system" and "lattice
# system" as the same 7 classes; :func:`paper_reported` maps both targets to these numbers.
_NAN = math.nan
PAPER_000_REPORTED: dict[str, dict[str, dict[str, float]]] = {
    "crystal_system": {
        # Abstract and Section VI: 5-fold cross-validation accuracy 95.6 %, micro-F1 0.949.
        "acnn": {"accuracy": 0.956, "micro_f1": 0.949, "macro_f1": _NAN},
        # Section IV ("Experimental setup"), one paragraph per method, accuracy only.
        "naive_bayes": {"accuracy": 0.45, "micro_f1": _NAN, "macro_f1": _NAN},
        "knn": {"accuracy": 0.56, "micro_f1": _NAN, "macro_f1": _NAN},
        "logistic_regression": {"accuracy": _NAN, "micro_f1": _NAN, "macro_f1": _NAN},
        "random_forest": {"accuracy": 0.64, "micro_f1": _NAN, "macro_f1": _NAN},
        "decision_tree": {"accuracy": 0.32, "micro_f1": _NAN, "macro_f1": _NAN},
        "svm": {"accuracy": 0.49, "micro_f1": _NAN, "macro_f1": _NAN},
        "gradient_boosting": {"accuracy": 0.38, "micro_f1": _NAN, "macro_f1": _NAN},
        "mlp": {"accuracy": _NAN, "micro_f1": _NAN, "macro_f1": _NAN},
    },
    # Section IV, a-CNN paragraph: "an accuracy of 95% and 86% for crystal dimensionality and
    # space group (Figure 5 and Figure 6)"; no baseline numbers for these targets.
    "space_group": {"acnn": {"accuracy": 0.86, "micro_f1": _NAN, "macro_f1": _NAN}},
    "dimensionality": {"acnn": {"accuracy": 0.95, "micro_f1": _NAN, "macro_f1": _NAN}},
}
"""Paper 000's reported cross-validation figures: target -> method -> metric (NaN: not given)."""


def paper_reported(target: str) -> dict[str, dict[str, float]]:
    """Paper 000's figures for ``target`` (``lattice_system`` reads the crystal-system ones)."""
    key = "crystal_system" if target == "lattice_system" else target
    return PAPER_000_REPORTED.get(key, {})


# --- folds -----------------------------------------------------------------------------------


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


def _validation_part(
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


# --- methods ---------------------------------------------------------------------------------


def classical_estimator(method: str, seed: int = 0, n_jobs: int | None = None) -> Any:
    """A fresh scikit-learn estimator of a :data:`CLASSICAL_METHODS` name.

    Gaussian Naive Bayes, k-NN (k = 5, distance weighted) and the trees see the binned
    intensities as they are; logistic regression, the RBF SVM and the MLP are preceded by a
    ``StandardScaler``. Iteration caps keep a fold of ~6,000 patterns x 450 bins within tens
    of seconds on two cores.

    Raises:
        ConfigError: unknown method.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    state = seed % 2**32
    factories: dict[str, Callable[[], Any]] = {
        "naive_bayes": lambda: GaussianNB(),
        "knn": lambda: KNeighborsClassifier(n_neighbors=5, weights="distance", n_jobs=n_jobs),
        "logistic_regression": lambda: make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, max_iter=300, random_state=state)
        ),
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=100, random_state=state, n_jobs=n_jobs
        ),
        "decision_tree": lambda: DecisionTreeClassifier(random_state=state),
        "svm": lambda: make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10.0, gamma="scale")),
        "gradient_boosting": lambda: HistGradientBoostingClassifier(
            max_iter=50,
            max_leaf_nodes=15,
            learning_rate=0.1,
            early_stopping=True,
            n_iter_no_change=5,
            random_state=state,
        ),
        "mlp": lambda: make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=(256, 128),
                max_iter=200,
                early_stopping=True,
                random_state=state,
            ),
        ),
    }
    if method not in factories:
        raise ConfigError(f"method {method!r} is not one of {list(factories)}")
    return factories[method]()


@torch.no_grad()
def predict_acnn(model: ACNN, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` of patterns ``(n, n_points)``, float32."""
    model.eval()
    device = next(model.parameters()).device
    out = [
        model.predict(
            torch.from_numpy(np.ascontiguousarray(x[i : i + batch], np.float32)).to(device)
        )
        .cpu()
        .numpy()
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.n_classes), np.float32)


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


def cross_validate_classifiers(
    profiles: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    class_names: Sequence[str],
    protocol: Protocol = "strain",
    *,
    n_folds: int = 5,
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    preset: ClassifierPreset = CV_PRESET,
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
        protocol: ``strain`` or ``material`` (see :func:`make_folds`).
        n_folds: folds.
        methods: names of :data:`ACNN_METHODS` and :data:`CLASSICAL_METHODS`, in run order.
        seed: seed of the folds, the validation split, the models.
        preset: a-CNN training settings (epochs, minutes, batch, lr, augmentation,
            ``validation_fraction``).
        two_theta: the grid, degrees (its step sizes the augmentations; default step 1).
        n_bins: windows the classical methods see.
        max_strains_per_material: use the first ``S'`` strain conditions of each material.
        target: label name, recorded.
        device: a-CNN device (overrides ``preset.device``).
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
        fit_idx, val_idx = _validation_part(
            fold.train, n_strains, protocol, preset.validation_fraction, seed_for(seed, fold.index)
        )
        for method in methods:
            t0 = time.perf_counter()
            model: ACNN | None = None
            extra: dict[str, Any] = {}
            if method in ACNN_METHODS:
                model, result = fit_acnn(
                    x[fit_idx],
                    y[fit_idx],
                    x[val_idx],
                    y[val_idx],
                    len(class_names),
                    preset,
                    variant=ACNN_METHODS[method],
                    step_deg=step_deg,
                    two_theta_start=two_theta_start,
                    seed=seed_for(seed, fold.index, 1),
                    device=device,
                    callbacks=with_prefix(callbacks, f"{method}/fold{fold.index}/"),
                    progress=progress,
                )
                t1 = time.perf_counter()
                y_pred = predict_acnn(model, x[fold.test]).argmax(axis=1)
                extra = {
                    "best_epoch": result.best_epoch,
                    "epochs": len(result.history),
                    "stop_reason": result.stop_reason,
                    "variant": ACNN_METHODS[method] or preset.variants[0],
                    "n_validation": int(len(val_idx)),
                }
                model = model.cpu() if keep_models else None
            else:
                assert binned is not None
                estimator = classical_estimator(method, seed, n_jobs)
                with _thread_limit(n_jobs), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence warnings of capped iterations
                    estimator.fit(binned[fold.train], y[fold.train])
                    t1 = time.perf_counter()
                    y_pred = np.asarray(estimator.predict(binned[fold.test]), dtype=np.int64)
            t2 = time.perf_counter()
            predictions[method][fold.test] = y_pred
            per_fold[method].append(
                MethodFold(
                    method=method,
                    fold=fold.index,
                    metrics=classification_metrics(y[fold.test], y_pred, labels_idx, names),
                    fit_s=t1 - t0,
                    predict_s=t2 - t1,
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


# --- tables ----------------------------------------------------------------------------------


def _results_by_protocol(
    results: CVResult | Sequence[CVResult] | Mapping[str, CVResult],
) -> dict[str, CVResult]:
    if isinstance(results, CVResult):
        return {results.protocol: results}
    if isinstance(results, Mapping):
        return dict(results)
    return {r.protocol: r for r in results}


def classification_table(
    results: CVResult | Sequence[CVResult] | Mapping[str, CVResult],
    *,
    metrics: Sequence[str] = TABLE_METRICS,
    paper: bool = True,
    numeric: bool = False,
    digits: int = 3,
) -> pd.DataFrame:
    """The comparison table: one row per method, per protocol the mean ± std over folds.

    Args:
        results: one :class:`CVResult` per protocol (a sequence, a ``{protocol: result}``
            mapping or a single result).
        metrics: metrics of :data:`SUMMARY_METRICS` to show.
        paper: add paper 000's reported figures (:func:`paper_reported` of the results'
            target) under the column group ``"paper 000"`` (NaN where it gives none).
        numeric: floats in ``(protocol, metric, "mean"|"std")`` columns instead of
            ``"0.956 ± 0.012"`` strings in ``(protocol, metric)`` columns.
        digits: decimals of the strings.

    Returns:
        A frame indexed by method name (union of the results' methods, in run order) with
        two-level columns ``(protocol, metric)`` (three levels when ``numeric``) and a
        ``label`` column (:data:`METHOD_LABELS`).
    """
    by_protocol = _results_by_protocol(results)
    methods: list[str] = []
    for result in by_protocol.values():
        methods += [m for m in result.methods if m not in methods]
    columns: dict[tuple[str, ...], list[Any]] = {}
    for protocol, result in by_protocol.items():
        summary = result.summary().reindex(methods)
        for metric in metrics:
            mean, std = summary[f"{metric}_mean"], summary[f"{metric}_std"]
            if numeric:
                columns[(protocol, metric, "mean")] = mean.tolist()
                columns[(protocol, metric, "std")] = std.tolist()
            else:
                columns[(protocol, metric)] = [
                    "" if pd.isna(a) else f"{a:.{digits}f} ± {0.0 if pd.isna(b) else b:.{digits}f}"
                    for a, b in zip(mean, std, strict=True)
                ]
    if paper:
        target = next(iter(by_protocol.values())).target if by_protocol else ""
        reported = paper_reported(target)
        for metric in metrics:
            values = [reported.get(m, {}).get(metric, math.nan) for m in methods]
            key = ("paper 000", metric, "mean") if numeric else ("paper 000", metric)
            columns[key] = values
    frame = pd.DataFrame(columns, index=pd.Index(methods, name="method"))
    frame.columns = pd.MultiIndex.from_tuples(list(columns))
    label_key = ("label",) + ("",) * (frame.columns.nlevels - 1)
    frame.insert(0, label_key, [METHOD_LABELS.get(m, m) for m in methods])
    return frame


# --- from a store ----------------------------------------------------------------------------


def load_cv_profiles(
    store_path: store.StorePath,
    profile: ProfileConfig,
    max_strains_per_material: int | None = None,
    splits: Sequence[str] = ("train", "test"),
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Stored profiles of the first ``max_strains_per_material`` strains of ``splits``.

    Strain conditions of ``splits`` in that order, read lazily so that only those are loaded.
    :func:`~xrdpipe.patterns.datasets.load_profiles` as float32 (profiles and peaks
    completed, not quarantined); an unknown split is a ConfigError.

    Returns:
        ``(M, S, n_points)`` float32 profiles, the materials, the two-theta grid (degrees).
    """
    try:
        profiles, materials, grid = load_profiles(
            store_path, profile, splits, max_strains_per_material
        )
    except StoreError as exc:
        raise ConfigError(str(exc)) from exc
    return np.asarray(profiles, np.float32), materials, grid


@dataclass
class ClassificationEvaluation:
    """What :func:`run_classification_evaluation` returns.

    Attributes:
        results: protocol -> :class:`CVResult`.
        table: :func:`classification_table` of both (strings, with the paper's figures).
        class_names: the classes.
        material_ids: COD ids of the evaluated materials (profile row order).
        excluded: classes dropped for too few materials, and how many materials they held.
        config: the resolved configuration (subset, preset, target, sizes, store identity).
        two_theta: the grid, degrees.
        plots: written figures (name -> path), when ``plot_dir`` was given.
        wall_s: wall time.
    """

    results: dict[str, CVResult]
    table: pd.DataFrame
    class_names: list[str]
    material_ids: list[str]
    excluded: dict[str, Any]
    config: dict[str, Any]
    two_theta: np.ndarray
    plots: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0

    def metrics(self) -> dict[str, float]:
        """``<protocol>/<method>/<metric>_{mean,std}`` of every result."""
        return {f"{p}/{k}": v for p, r in self.results.items() for k, v in r.metrics().items()}


def _subsample_materials(y_mat: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` material indices, per class in proportion (at least one each), sorted."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_mat, return_counts=True)
    quota = np.maximum(1, np.floor(counts * n / len(y_mat)).astype(int))
    chosen = [
        rng.permutation(np.flatnonzero(y_mat == c))[:q] for c, q in zip(classes, quota, strict=True)
    ]
    picked = np.concatenate(chosen)
    rest = np.setdiff1d(np.arange(len(y_mat)), picked)
    extra = rng.permutation(rest)[: max(0, n - len(picked))]
    return np.sort(np.concatenate([picked, extra])[:n])


def run_classification_evaluation(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: ClassifierPreset = CV_PRESET,
    target: Target = "lattice_system",
    *,
    protocols: Sequence[Protocol] = PROTOCOLS,
    methods: Sequence[str] = METHODS,
    n_folds: int = 5,
    seed: int | None = None,
    n_bins: int = 450,
    max_strains_per_material: int | None = 40,
    max_materials: int | None = 200,
    device: str | None = None,
    n_jobs: int | None = 1,
    manifest_path: str | Path | None = None,
    plot_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
) -> ClassificationEvaluation:
    """Paper 000's cross-validated comparison on a subset's store, under both protocols.

    Loads the rendered profiles of the first ``max_strains_per_material`` strain conditions
    (training strains first, then test strains) of up to ``max_materials`` materials (a
    class-proportional seeded sample), labels them by ``target`` (space groups with fewer than
    ``preset.min_materials_per_class`` materials are dropped, as in training) and runs
    :func:`cross_validate_classifiers` for each protocol. With ``plot_dir``, writes the pooled
    confusion matrix of every (protocol, method) and, for the first a-CNN method, the class
    mean and misclassified CAM figures of fold 0 (:mod:`xrdpipe.evaluation.cam_plots`).

    Args:
        store_path: the subset's ``patterns.zarr``.
        subset_config: the subset (profile grid, seed).
        preset: a-CNN settings of each fold (default :data:`CV_PRESET`).
        target: ``lattice_system``, ``crystal_system``, ``space_group`` or ``dimensionality``.
        protocols: the protocols to run.
        methods: the methods.
        n_folds: folds.
        seed: folds and models (default: the subset's seed).
        n_bins: windows of the classical methods.
        max_strains_per_material: strain conditions per material (``None``: all).
        max_materials: materials (``None``: all).
        device: a-CNN device.
        n_jobs: scikit-learn workers and threads (``None``: every core).
        manifest_path: the manifest (dimensionality labels); default beside the store.
        plot_dir: where figures go (``None``: none).
        callbacks: a-CNN epoch records, prefixed ``<protocol>/<method>/fold<k>/``.
        progress: tqdm bars.

    Raises:
        TaskError: unconstrained-strain store, or fewer than two classes.
    """
    start = time.perf_counter()
    seed = subset_config.seed if seed is None else seed
    identity = store_identity(store_path)
    if identity["strain_mode"] == "unconstrained":
        raise TaskError(
            f"store {store_path} was simulated with strain_mode 'unconstrained': symmetry labels "
            "do not hold for its strained cells; use a subset with strain_mode 'symmetry'"
        )
    profiles, materials, two_theta = load_cv_profiles(
        store_path, subset_config.profile, max_strains_per_material
    )
    manifest = (
        Path(manifest_path) if manifest_path else Path(store_path).parent / "manifest.parquet"
    )
    labels = target_labels(materials, target, manifest)
    excluded: dict[str, Any] = {"classes": [], "materials": 0}
    if target == "space_group":
        counts = labels.value_counts()
        small = counts[counts < preset.min_materials_per_class]
        excluded = {"classes": sorted(small.index.tolist(), key=int), "materials": int(small.sum())}
    keep = np.flatnonzero(~labels.isin(excluded["classes"]).to_numpy())
    class_names = class_order(target, labels.iloc[keep].tolist())
    if len(class_names) < 2:
        raise TaskError(f"target {target!r} has {len(class_names)} class(es); need 2")
    index = {c: i for i, c in enumerate(class_names)}
    y_mat = np.array([index[labels.iloc[i]] for i in keep], dtype=np.int64)
    if max_materials is not None and len(keep) > max_materials:
        pick = _subsample_materials(y_mat, max_materials, seed)
        keep, y_mat = keep[pick], y_mat[pick]
    profiles = profiles[keep]
    material_ids = materials["cod_id"].astype(str).to_numpy()[keep].tolist()

    results: dict[str, CVResult] = {}
    for protocol in protocols:
        results[protocol] = cross_validate_classifiers(
            profiles,
            y_mat,
            class_names,
            protocol,
            n_folds=n_folds,
            methods=methods,
            seed=seed,
            preset=preset,
            two_theta=two_theta,
            n_bins=n_bins,
            target=target,
            device=device,
            n_jobs=n_jobs,
            callbacks=with_prefix(callbacks, f"{protocol}/"),
            progress=progress,
        )
    plots: dict[str, Path] = {}
    if plot_dir is not None:
        plots = _write_plots(Path(plot_dir), results, profiles, two_theta)
    config = {
        "task": "classification-evaluation",
        "target": target,
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "protocols": list(protocols),
        "methods": list(methods),
        "n_folds": n_folds,
        "seed": seed,
        "n_bins": n_bins,
        "max_strains_per_material": max_strains_per_material,
        "max_materials": max_materials,
        "n_materials": len(material_ids),
        "n_strains": int(profiles.shape[1]),
        "class_names": class_names,
        "excluded_classes": excluded["classes"],
        "excluded_materials": excluded["materials"],
        "store": identity,
    }
    return ClassificationEvaluation(
        results=results,
        table=classification_table(results),
        class_names=class_names,
        material_ids=material_ids,
        excluded=excluded,
        config=config,
        two_theta=np.asarray(two_theta),
        plots=plots,
        wall_s=time.perf_counter() - start,
    )


def _write_plots(
    folder: Path, results: Mapping[str, CVResult], profiles: np.ndarray, two_theta: np.ndarray
) -> dict[str, Path]:
    """Confusion matrices of every (protocol, method); CAM figures of fold 0's a-CNN."""
    from xrdpipe.evaluation import cam_plots

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for protocol, result in results.items():
        for method in result.methods:
            name = f"confusion_{protocol}_{method}"
            written[name] = cam_plots.plot_confusion_matrix(
                result.pooled[method]["confusion"],
                result.class_names,
                folder / f"{name}.png",
                f"{METHOD_LABELS.get(method, method)}, {protocol} protocol, pooled over folds",
            )
        acnn = [m for m in result.methods if m in ACNN_METHODS]
        if not acnn or result.per_fold[acnn[0]][0].model is None:
            continue
        fold = result.folds[0]
        model = result.per_fold[acnn[0]][0].model
        assert model is not None
        x = profiles[:, : result.n_strains].reshape(-1, profiles.shape[-1])[fold.test]
        y_true = result.y_true[fold.test]
        y_pred = result.predictions[acnn[0]][fold.test]
        true_cams = acnn_cams(model, x, y_true)
        written[f"cam_class_means_{protocol}"] = cam_plots.plot_class_mean_cams(
            two_theta,
            x,
            true_cams,
            y_true,
            result.class_names,
            folder / f"cam_class_means_{protocol}.png",
        )
        wrong = np.flatnonzero(y_pred != y_true)[:12]
        written[f"cam_misclassified_{protocol}"] = cam_plots.plot_misclassified_cams(
            two_theta,
            x[wrong],
            acnn_cams(model, x[wrong], y_pred[wrong]),
            y_true[wrong],
            y_pred[wrong],
            result.class_names,
            folder / f"cam_misclassified_{protocol}.png",
        )
    return written
