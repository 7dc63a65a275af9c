"""The figure of one measured file's predictions (``xrdpipe predict --out``).

The pattern on each model's grid; for an a-CNN its class activation map of the top class;
for a phase-fraction model the reference peaks of the phases it finds; for a classifier
joined with indexing, the indexed cell's calculated lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xrdpipe.stages.predict import SHOWN_FRACTION, FilePrediction, ModelEnsemble


def plot_prediction(
    result: FilePrediction, models: Sequence[ModelEnsemble], path: Path
) -> tuple[Path, list[str]]:
    """Plot the pattern on the model grid, the a-CNN's CAM and the phases' reference peaks.

    Returns the PNG path and notes (what was omitted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes: list[str] = []
    fig, (ax, sticks) = plt.subplots(
        2, 1, figsize=(10, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for out, model in zip(result.outputs, models, strict=True):
        grid = model.grid.two_theta
        top = out.ranked()[0]
        ax.plot(grid, out.prepared.x, lw=0.8, label=f"measured on {model.name} grid")
        if out.kind == "classifier":
            if out.indexing is not None and out.indexing.cell is not None:
                cell = out.indexing.cell
                sticks.vlines(
                    cell.two_theta(model.grid.wavelength, float(grid[-1])),
                    0,
                    0.8,
                    color="tab:green",
                    lw=1,
                    label=f"indexed {cell.family} cell (M {cell.figure_of_merit:.0f})",
                )
                sticks.legend(fontsize=7, loc="upper right")
            cam = model.cam(out.prepared.x, top)
            if cam is None:
                notes.append(f"no CAM: {model.name} is not an a-CNN")
                continue
            scaled = cam / max(float(np.abs(cam).max()), 1e-12)
            ax.fill_between(
                grid,
                0,
                scaled.clip(min=0),
                color="tab:red",
                alpha=0.25,
                label=f"CAM of {out.labels[top]} ({out.mean[top]:.2f})",
            )
        else:
            references, why = model.reference_peaks()
            if why:
                notes.append(why)
            k = 0
            for i in out.ranked():
                if out.mean[i] < SHOWN_FRACTION or out.labels[i] not in references:
                    continue
                name = out.display(i)
                sticks.vlines(
                    references[out.labels[i]],
                    k,
                    k + 0.8,
                    color=colours[k % len(colours)],
                    lw=1,
                    label=f"{name}: {out.mean[i]:.2f} +- {out.std[i]:.2f}",
                )
                k += 1
            if k:
                sticks.legend(fontsize=7, loc="upper right")
    ax.set(ylabel="normalised intensity", title=result.path.name)
    ax.legend(fontsize=7, loc="upper right")
    sticks.set(xlabel="two-theta (deg, model wavelength)", yticks=[], ylabel="phases")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, notes
