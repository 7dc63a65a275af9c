"""Figures of the classifier evaluation: class activation maps (paper 000) and confusion matrices.

Paper 000 (after Yang et al. 2019) reads a trained a-CNN through *average class activation
maps*: for each class, the maps of its patterns (for their true class) are averaged and drawn
over the class's mean pattern, so one sees which two-theta regions drive the decision. Here:

* :func:`plot_class_mean_cams`: one panel per class; the class's mean pattern drawn as a line
  coloured by its mean CAM (scaled to [0, 1] per class, colour bar shared), with the mean CAM
  itself as a shaded area underneath;
* :func:`plot_misclassified_cams`: a grid of misclassified patterns, each with the CAM the
  caller passes (usually that of the *predicted* class: what the network saw instead);

CAMs come from :func:`~xrdpipe.models.acnn.class_activation_maps` (batched numpy wrapper:
:func:`~xrdpipe.evaluation.cv.acnn_cams`). Every function writes one PNG with
the Agg backend and returns its path. (:mod:`xrdpipe.tracking` imports MLflow at import time,
so evaluation code draws its own figures and the flows log the files.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CAM_CMAP = "inferno"
"""Colour map of class activation maps (dark: no evidence, bright: strong evidence)."""
DPI = 120


def _scaled(cam: np.ndarray) -> np.ndarray:
    """A map shifted and scaled to [0, 1] (all zeros when it is flat)."""
    low, high = float(np.min(cam)), float(np.max(cam))
    return (cam - low) / (high - low) if high > low else np.zeros_like(cam, dtype=np.float64)


def _check(two_theta: np.ndarray, patterns: np.ndarray, cams: np.ndarray) -> None:
    if patterns.ndim != 2 or patterns.shape != cams.shape:
        raise ValueError(
            f"patterns {patterns.shape} and cams {cams.shape} must both be (n, n_points)"
        )
    if patterns.shape[1] != len(two_theta):
        raise ValueError(f"{len(two_theta)} two_theta points for patterns {patterns.shape}")


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _coloured_line(ax: plt.Axes, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> LineCollection:
    points = np.stack([x, y], axis=1).reshape(-1, 1, 2)
    segments = np.concatenate([points[:-1], points[1:]], axis=1)
    line = LineCollection(segments, cmap=CAM_CMAP, norm=Normalize(0.0, 1.0), linewidth=1.4)
    line.set_array(0.5 * (c[:-1] + c[1:]))
    ax.add_collection(line)
    return line


def plot_class_mean_cams(
    two_theta: np.ndarray,
    patterns: np.ndarray,
    cams: np.ndarray,
    y_true: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Average class activation maps",
) -> Path:
    """Per class, its mean pattern coloured by the average CAM of its patterns.

    Args:
        two_theta: ``(n_points,)`` grid, degrees.
        patterns: ``(n, n_points)`` patterns.
        cams: ``(n, n_points)`` their maps (usually for the true class).
        y_true: ``(n,)`` class indices.
        class_names: names of the class indices.
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``. Classes without patterns get no panel.
    """
    two_theta, patterns, cams = np.asarray(two_theta), np.asarray(patterns), np.asarray(cams)
    _check(two_theta, patterns, cams)
    y_true = np.asarray(y_true)
    present = [c for c in range(len(class_names)) if np.any(y_true == c)]
    fig, axes = plt.subplots(
        max(1, len(present)),
        1,
        figsize=(9, 1.6 * max(1, len(present)) + 0.8),
        sharex=True,
        layout="constrained",
    )
    axes = np.atleast_1d(axes)
    line = None
    for ax, c in zip(axes, present, strict=False):
        members = y_true == c
        mean_pattern = patterns[members].mean(axis=0)
        mean_cam = _scaled(cams[members].mean(axis=0))
        top = float(mean_pattern.max()) or 1.0
        ax.fill_between(two_theta, 0.0, mean_cam * top, color="tab:blue", alpha=0.15, lw=0)
        line = _coloured_line(ax, two_theta, mean_pattern, mean_cam)
        ax.set_xlim(float(two_theta[0]), float(two_theta[-1]))
        ax.set_ylim(0.0, 1.08 * top)
        ax.set_ylabel("intensity")
        ax.text(
            0.99, 0.9, f"{class_names[c]} (n={int(members.sum())})",
            transform=ax.transAxes, ha="right", va="top", fontsize=9,
        )  # fmt: skip
    if not present:
        axes[0].text(0.5, 0.5, "no patterns", ha="center", va="center")
    axes[-1].set_xlabel("2θ (degrees)")
    fig.suptitle(title)
    if line is not None:
        fig.colorbar(line, ax=list(axes), label="mean CAM (scaled)", fraction=0.03, pad=0.01)
    return _save(fig, path)


def plot_misclassified_cams(
    two_theta: np.ndarray,
    patterns: np.ndarray,
    cams: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    max_samples: int = 12,
) -> Path:
    """The first ``max_samples`` misclassified patterns, each coloured by its CAM.

    Args:
        two_theta: ``(n_points,)`` grid, degrees.
        patterns: ``(n, n_points)`` patterns (any; correct ones are skipped).
        cams: ``(n, n_points)`` maps (usually of the predicted class).
        y_true: ``(n,)`` true class indices.
        y_pred: ``(n,)`` predicted class indices.
        class_names: names of the class indices.
        path: the PNG to write.
        max_samples: most panels.

    Returns:
        ``path`` (a figure saying so when nothing is misclassified).
    """
    two_theta, patterns, cams = np.asarray(two_theta), np.asarray(patterns), np.asarray(cams)
    _check(two_theta, patterns, cams)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    wrong = np.flatnonzero(y_true != y_pred)[:max_samples]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no misclassified patterns", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    n_cols = min(3, len(wrong))
    n_rows = math.ceil(len(wrong) / n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(4.2 * n_cols, 2.2 * n_rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    line = None
    for ax, i in zip(axes.flat, wrong, strict=False):
        top = float(patterns[i].max()) or 1.0
        line = _coloured_line(ax, two_theta, patterns[i], _scaled(cams[i]))
        ax.set_xlim(float(two_theta[0]), float(two_theta[-1]))
        ax.set_ylim(0.0, 1.08 * top)
        ax.set_title(
            f"true {class_names[int(y_true[i])]} → predicted {class_names[int(y_pred[i])]}",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(wrong) :]:
        ax.set_axis_off()
    fig.supxlabel("2θ (degrees)")
    fig.suptitle("Misclassified patterns, coloured by the CAM")
    if line is not None:
        fig.colorbar(line, ax=list(axes.flat), label="CAM (scaled)", fraction=0.02, pad=0.01)
    return _save(fig, path)
