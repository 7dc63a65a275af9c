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


def plot_confusion(confusion: np.ndarray, class_names: Sequence[str], title: str, path: Path):
    """Row-normalised confusion matrix with counts (rows: true class)."""
    plt = _pyplot()
    n = len(class_names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    rows = confusion.sum(axis=1, keepdims=True).clip(min=1)
    ax.imshow(confusion / rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
