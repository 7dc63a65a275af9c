"""``xrdpipe quantify``'s outputs: ``quantify.csv``, ``quantify.json``, a PNG per scan, HTML.

The plot of a refined scan shows the measured counts, the fitted total, each phase's
contribution (above the background) and the residual; without a refinement, the scan on the
model's grid and the CNN's weight fractions as bars with their sigma.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdpipe.evaluation.report import Report, ReportSection, write_report
from xrdpipe.stages.quantify_scans import COLUMNS, ScanQuantity

CSV_FILE = "quantify.csv"
JSON_FILE = "quantify.json"
HTML_FILE = "quantify.html"


def plot_name(index: int, quantity: ScanQuantity) -> str:
    """``<index>-<stem>.png``: two scans with one stem get two files."""
    stem = Path(quantity.scan).stem or "scan"
    return f"{index:03d}-{stem}.png"


def plot_scan(quantity: ScanQuantity, path: Path) -> Path:
    """The scan's figure (module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = 100.0
    if quantity.refinement is not None:
        fit = quantity.refinement.refinement
        fig, (ax, res) = plt.subplots(
            2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        ax.plot(fit.two_theta, fit.observed, ".", ms=1.5, color="k", label="measured")
        ax.plot(fit.two_theta, fit.calculated, lw=0.9, color="tab:red", label="fitted total")
        for phase in fit.phases:
            if phase.scale > 0:
                ax.plot(
                    fit.two_theta,
                    fit.background + phase.contribution,
                    lw=0.7,
                    label=f"{phase.name} {pct * phase.weight_fraction:.1f} wt%",
                )
        ax.plot(fit.two_theta, fit.background, lw=0.6, ls="--", color="grey", label="background")
        res.plot(fit.two_theta, fit.residual, lw=0.6, color="tab:blue")
        res.axhline(0, color="grey", lw=0.5)
        res.set(xlabel="two-theta (deg)", ylabel="residual")
        ax.set(ylabel="counts", title=f"{Path(quantity.scan).name}  (R_wp {fit.rwp:.3f})")
        ax.legend(fontsize=7, loc="upper right")
    else:
        fig, (ax, bars) = plt.subplots(
            1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1.4]}
        )
        grid = quantity.grid if quantity.grid is not None else np.arange(len(quantity.prepared.x))
        ax.plot(grid, quantity.prepared.x, lw=0.8, color="k")
        ax.set(
            xlabel="two-theta (deg, model grid)",
            ylabel="normalised intensity",
            title=Path(quantity.scan).name,
        )
        y = np.arange(len(quantity.names))
        bars.barh(y, pct * quantity.weight_fraction, xerr=pct * quantity.spread, color="tab:blue")
        bars.set_yticks(y, quantity.names, fontsize=7)
        bars.set(xlabel=quantity.unit if quantity.standard is None else "relative wt%")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def rows_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a frame with :data:`COLUMNS`; flags joined by ``"; "``."""
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    frame["flags"] = frame["flags"].map(lambda f: "; ".join(f) if isinstance(f, list) else "")
    return frame


def write_outputs(
    out_dir: Path,
    quantities: Sequence[ScanQuantity],
    summary: dict[str, Any],
    failures: dict[str, str],
) -> dict[str, Path]:
    """Write the CSV, the JSON, the plots and the HTML summary into ``out_dir``.

    Returns:
        ``{"csv", "json", "html"}`` paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row for q in quantities for row in q.rows()]
    frame = rows_frame(rows)
    csv = out_dir / CSV_FILE
    frame.to_csv(csv, index=False)
    plots = {}
    for i, quantity in enumerate(quantities):
        plots[quantity.scan] = plot_scan(quantity, out_dir / plot_name(i, quantity)).name
    scans = [
        {
            "scan": q.scan,
            "unit": q.unit,
            "seconds": q.seconds,
            "notes": q.notes,
            "flags": q.scan_flags,
            "plot": plots[q.scan],
        }
        for q in quantities
    ]
    document = {**summary, "rows": rows, "scans": scans, "failed": failures}
    json_path = out_dir / JSON_FILE
    json_path.write_text(json.dumps(document, indent=2, default=_json_value))
    links = "".join(
        f"<li><a href='{html.escape(name)}'>{html.escape(Path(scan).name)}</a></li>"
        for scan, name in plots.items()
    )
    failed = "".join(
        f"<li>{html.escape(path)}: {html.escape(why)}</li>" for path, why in failures.items()
    )
    units = sorted({q.unit for q in quantities})
    report = Report(
        title=f"xrdpipe quantify: {summary.get('phase_set', '')}",
        summary={k: v for k, v in summary.items() if not isinstance(v, (dict, list))},
        sections=[
            ReportSection(
                title="Weight fractions",
                paragraphs=[
                    f"Values in {', '.join(units) or 'relative crystalline wt%'}; sigma: the "
                    "ensemble spread (refined: sqrt(spread^2 + esd^2)). Rules: docs/quantify.md.",
                ],
                tables=[("one row per scan and phase", frame)],
                raw_html=f"<h3>Plots</h3><ul>{links}</ul>"
                + (f"<h3>Failed scans</h3><ul>{failed}</ul>" if failed else ""),
            )
        ],
    )
    html_path = write_report(report, out_dir / HTML_FILE)
    return {"csv": csv, "json": json_path, "html": html_path}


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)
