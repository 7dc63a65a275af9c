"""Training plots: learning curves, a confusion matrix, predicted vs true phase fractions.

The plots tracking logs as run artifacts (moved from ``xrdpipe.tracking``). Each function
draws with matplotlib's Agg backend, writes a PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, path: Path
) -> Path:
    """Train/validation loss and a validation metric per epoch, one line per history."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for label, history in histories.items():
        epochs = [r["epoch"] for r in history]
        axes[0].plot(epochs, [r["train_loss"] for r in history], label=f"{label} train")
        axes[0].plot(epochs, [r["val_loss"] for r in history], "--", label=f"{label} val")
        axes[1].plot(epochs, [r["metrics"].get(metric, math.nan) for r in history], label=label)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel=f"validation {metric}", title=metric)
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_matrix(
    confusion: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """A confusion matrix (rows true, columns predicted): counts, coloured by row share.

    Args:
        confusion: ``(C, C)`` counts.
        class_names: the ``C`` class names.
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``.
    """
    confusion = np.asarray(confusion)
    c = len(class_names)
    if confusion.shape != (c, c):
        raise ValueError(f"confusion {confusion.shape} does not match {c} class_names")
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    size = 2.0 + 0.55 * c
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size + 1.0, size), layout="constrained")
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )  # fmt: skip
    ax.set_xticks(range(c), [str(n) for n in class_names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(c), [str(n) for n in class_names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="share of true class", fraction=0.046, pad=0.04)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_fractions(
    predictions: np.ndarray, targets: np.ndarray, labels: Sequence[str], title: str, path: Path
) -> Path:
    """Predicted vs true phase fraction of every (test mixture, material), one colour each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for j, label in enumerate(labels):
        ax.scatter(targets[:, j], predictions[:, j], s=4, alpha=0.4, label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(
        xlim=(0, 1), ylim=(0, 1), xlabel="true fraction", ylabel="predicted fraction", title=title
    )
    if len(labels) <= 12:
        ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
