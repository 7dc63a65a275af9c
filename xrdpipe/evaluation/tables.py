"""Paper 000's comparison table: method names, the paper's reported figures, mean ± std.

:func:`classification_table` sets the cross-validated results of
:func:`~xrdpipe.evaluation.cv.cross_validate_classifiers` (mean and standard deviation over
folds, per protocol) beside the paper's reported figures (:data:`PAPER_000_REPORTED`).
The a-CNN preset of a fold is the catalog's ``presets.classifier.cv``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from xrdpipe.evaluation.cv import CVResult

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


def results_by_protocol(
    results: CVResult | Sequence[CVResult] | Mapping[str, CVResult],
) -> dict[str, CVResult]:
    """``{protocol: result}`` of one result, a sequence or a ``{protocol: result}`` mapping."""
    if isinstance(results, Mapping):
        return dict(results)
    if hasattr(results, "protocol"):  # one CVResult (neither a mapping nor a sequence)
        return {results.protocol: results}
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
        results: one :class:`~xrdpipe.evaluation.cv.CVResult` per protocol (a sequence, a
            ``{protocol: result}`` mapping or a single result).
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
    by_protocol = results_by_protocol(results)
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
