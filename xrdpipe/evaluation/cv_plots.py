"""The figures of paper 000's cross-validated comparison, written to a folder.

:func:`write_cv_plots` draws, with :mod:`xrdpipe.evaluation.cam_plots`, the pooled confusion
matrix of every (protocol, method) and, for the first a-CNN method, the class-mean and
misclassified CAM figures of fold 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xrdpipe.evaluation import cam_plots
from xrdpipe.evaluation.cv import ACNN_METHODS, CVResult, acnn_cams
from xrdpipe.evaluation.plots import plot_confusion_matrix
from xrdpipe.evaluation.tables import METHOD_LABELS


def write_cv_plots(
    folder: Path, results: Mapping[str, CVResult], profiles: np.ndarray, two_theta: np.ndarray
) -> dict[str, Path]:
    """Confusion matrices of every (protocol, method); CAM figures of fold 0's a-CNN."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for protocol, result in results.items():
        for method in result.methods:
            name = f"confusion_{protocol}_{method}"
            written[name] = plot_confusion_matrix(
                result.pooled[method]["confusion"],
                result.class_names,
                folder / f"{name}.png",
                f"{METHOD_LABELS.get(method, method)}, {protocol} protocol"
                + (", pooled over folds" if len(result.folds) > 1 else ""),
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
