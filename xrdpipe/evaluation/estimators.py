"""One registry of the project's scikit-learn estimators, by kind and name.

Two kinds share it:

* ``classifier``: the eight classical baselines of paper 000's cross-validated comparison
  (:func:`classical_estimator`, used by :mod:`xrdpipe.evaluation.cv`), in the paper's order.
  Gaussian Naive Bayes, k-NN (k = 5, distance weighted) and the trees see the binned
  intensities as they are; logistic regression, the RBF SVM and the MLP are preceded by a
  ``StandardScaler``. Iteration caps keep a fold of ~6,000 patterns x 450 bins within tens
  of seconds on two cores.
* ``regressor``: the phase-fraction regressors of paper 002's comparison
  (:func:`make_regressor`, used by :mod:`xrdpipe.evaluation.baselines`): ``knn``
  (standardised inputs, 10 neighbours weighted by distance), ``random_forest`` (60 trees,
  10 % of the features per split, leaves of >= 5, ``n_jobs=1``), ``ridge`` (standardised,
  alpha 10) and ``mlp`` (standardised, 256-128 ReLU, Adam, early stopping on 10 % of the
  training set).

Each entry is a factory ``(random_state, n_jobs) -> estimator`` that builds a fresh estimator
(scikit-learn is imported when one is built); the random state is ``seed % 2**32``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from xrdpipe.errors import ConfigError

Kind = Literal["classifier", "regressor"]
"""The two kinds of estimators."""
Factory = Callable[[int, int | None], Any]
"""``(random_state, n_jobs) -> a fresh estimator``."""


def _scaled(estimator: Any) -> Any:
    """``estimator`` preceded by a ``StandardScaler`` (a ``make_pipeline``)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), estimator)


# --- classifiers (paper 000) -----------------------------------------------------------------


def _naive_bayes(state: int, n_jobs: int | None) -> Any:
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB()


def _knn_classifier(state: int, n_jobs: int | None) -> Any:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5, weights="distance", n_jobs=n_jobs)


def _logistic_regression(state: int, n_jobs: int | None) -> Any:
    from sklearn.linear_model import LogisticRegression

    return _scaled(LogisticRegression(C=1.0, max_iter=300, random_state=state))


def _random_forest_classifier(state: int, n_jobs: int | None) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=state, n_jobs=n_jobs)


def _decision_tree(state: int, n_jobs: int | None) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=state)


def _svm(state: int, n_jobs: int | None) -> Any:
    from sklearn.svm import SVC

    return _scaled(SVC(kernel="rbf", C=10.0, gamma="scale"))


def _gradient_boosting(state: int, n_jobs: int | None) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=50,
        max_leaf_nodes=15,
        learning_rate=0.1,
        early_stopping=True,
        n_iter_no_change=5,
        random_state=state,
    )


def _mlp_classifier(state: int, n_jobs: int | None) -> Any:
    from sklearn.neural_network import MLPClassifier

    return _scaled(
        MLPClassifier(
            hidden_layer_sizes=(256, 128),
            max_iter=200,
            early_stopping=True,
            random_state=state,
        )
    )


# --- regressors (paper 002) ------------------------------------------------------------------


def _knn_regressor(state: int, n_jobs: int | None) -> Any:
    from sklearn.neighbors import KNeighborsRegressor

    return _scaled(KNeighborsRegressor(n_neighbors=10, weights="distance", n_jobs=1))


def _random_forest_regressor(state: int, n_jobs: int | None) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(
        n_estimators=60,
        max_features=0.1,
        min_samples_leaf=5,
        n_jobs=1,
        random_state=state,
    )


def _ridge(state: int, n_jobs: int | None) -> Any:
    from sklearn.linear_model import Ridge

    return _scaled(Ridge(alpha=10.0))


def _mlp_regressor(state: int, n_jobs: int | None) -> Any:
    from sklearn.neural_network import MLPRegressor

    return _scaled(
        MLPRegressor(
            hidden_layer_sizes=(256, 128),
            alpha=1e-4,
            batch_size=256,
            learning_rate_init=1e-3,
            max_iter=200,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=10,
            random_state=state,
        )
    )


ESTIMATORS: dict[str, dict[str, Factory]] = {
    "classifier": {
        "naive_bayes": _naive_bayes,
        "knn": _knn_classifier,
        "logistic_regression": _logistic_regression,
        "random_forest": _random_forest_classifier,
        "decision_tree": _decision_tree,
        "svm": _svm,
        "gradient_boosting": _gradient_boosting,
        "mlp": _mlp_classifier,
    },
    "regressor": {
        "knn": _knn_regressor,
        "random_forest": _random_forest_regressor,
        "ridge": _ridge,
        "mlp": _mlp_regressor,
    },
}
"""kind -> name -> factory: every scikit-learn estimator of the project."""

CLASSICAL_METHODS = tuple(ESTIMATORS["classifier"])
"""The classical baselines of paper 000, in its order (scikit-learn)."""
REGRESSORS = tuple(ESTIMATORS["regressor"])
"""The scikit-learn baselines of the phase fractions."""


def make_estimator(kind: Kind, name: str, seed: int = 0, n_jobs: int | None = None) -> Any:
    """A fresh estimator of the registry (:data:`ESTIMATORS`).

    Args:
        kind: ``classifier`` or ``regressor``.
        name: its name within the kind.
        seed: the random state (``seed % 2**32``) of the estimators that draw.
        n_jobs: workers of the classifiers that take them (k-NN, random forest; ``None``:
            scikit-learn's default); the regressors always use one.

    Raises:
        ConfigError: unknown kind or name.
    """
    if kind not in ESTIMATORS:
        raise ConfigError(f"estimator kind {kind!r} is not one of {list(ESTIMATORS)}")
    factories = ESTIMATORS[kind]
    if name not in factories:
        raise ConfigError(f"{kind} {name!r} is not one of {list(factories)}")
    return factories[name](seed % 2**32, n_jobs)


def classical_estimator(method: str, seed: int = 0, n_jobs: int | None = None) -> Any:
    """A fresh scikit-learn estimator of a :data:`CLASSICAL_METHODS` name.

    Gaussian Naive Bayes, k-NN (k = 5, distance weighted) and the trees see the binned
    intensities as they are; logistic regression, the RBF SVM and the MLP are preceded by a
    ``StandardScaler``. Iteration caps keep a fold of ~6,000 patterns x 450 bins within tens
    of seconds on two cores.

    Raises:
        ConfigError: unknown method.
    """
    if method not in CLASSICAL_METHODS:
        raise ConfigError(f"method {method!r} is not one of {list(CLASSICAL_METHODS)}")
    return make_estimator("classifier", method, seed, n_jobs)


def make_regressor(name: str, seed: int = 0) -> Any:
    """The scikit-learn pipeline of a regression baseline (see the module docstring).

    Raises:
        ConfigError: ``name`` is not one of :data:`REGRESSORS`.
    """
    if name not in REGRESSORS:
        raise ConfigError(f"regressor {name!r} is not one of {list(REGRESSORS)}")
    return make_estimator("regressor", name, seed)


def _loggable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, tuple))


def regressor_params(model: Any) -> dict[str, Any]:
    """Flat, loggable parameters of a regressor or pipeline (``<step>.<param>``)."""
    steps = getattr(model, "steps", None) or [(type(model).__name__.lower(), model)]
    params: dict[str, Any] = {}
    for step, estimator in steps:
        params[f"{step}.estimator"] = type(estimator).__name__
        for key, value in sorted(estimator.get_params(deep=False).items()):
            if _loggable(value):
                params[f"{step}.{key}"] = list(value) if isinstance(value, tuple) else value
    return params
