"""Plots of the synthetic-to-real evaluation: reliability diagrams and the one-phase flag.

What ``benchmarks/unseen.py --mlflow`` logs beside its JSON: :func:`plot_reliability` draws
the equal-mass bins of :func:`~xrdpipe.evaluation.calibration.reliability` (accuracy against
confidence, one line per method), :func:`plot_flag_rates` the share of each kind of scan the
flag catches, per classifier. Matplotlib's Agg backend; each function writes a PNG and
returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xrdpipe.evaluation.plots import _pyplot as pyplot


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = ""
) -> Path:
    """Accuracy against mean confidence per bin, one line per method, and the diagonal.

    Args:
        diagrams: method -> :func:`~xrdpipe.evaluation.calibration.reliability` output
            (``confidence``, ``accuracy``, ``count`` per bin).
        path: the PNG to write.
        title: figure title.
    """
    if not diagrams:
        raise ValueError("plot_reliability needs at least one method's reliability diagram")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    for name, d in diagrams.items():
        conf, acc = np.asarray(d["confidence"]), np.asarray(d["accuracy"])
        if conf.shape != acc.shape:
            raise ValueError(f"{name}: confidence {conf.shape} and accuracy {acc.shape} differ")
        ax.plot(conf, acc, "o-", ms=4, label=name)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean confidence (bin)", ylabel="accuracy (bin)")
    ax.set_title(title or "reliability, 10 equal-mass bins", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_flag_rates(flags: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Share of scans flagged, per kind of scan (bars) and classifier (groups).

    Args:
        flags: classifier -> ``{"rates": {kind: {"flagged": share, "n": count}}}`` (the
            ``flag`` part of ``benchmarks/results/unseen.json``).
        path: the PNG to write.
    """
    if not flags:
        raise ValueError("plot_flag_rates needs at least one classifier's flag rates")
    kinds = list(next(iter(flags.values()))["rates"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(flags), 4))
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        shares = [f["rates"][kind]["flagged"] for f in flags.values()]
        x = np.arange(len(flags)) + (k - (len(kinds) - 1) / 2) * width
        ax.bar(x, shares, width, label=kind)
    ax.axhline(0.05, color="k", lw=0.8, ls=":")
    ax.axhline(0.8, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(flags)), list(flags), fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="share flagged")
    ax.set_title("one-phase flag (bars: single phases <= 0.05, others >= 0.8)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
