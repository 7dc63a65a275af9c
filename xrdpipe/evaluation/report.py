"""One self-contained HTML report per evaluation: tables, figures (embedded), papers' numbers.

Pure: takes frames and image files, writes one ``report.html`` that opens anywhere (no
network, no external files). :mod:`flows.evaluate` logs it to MLflow; ``xrdpipe report``
fetches the newest one.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


@dataclass
class ReportSection:
    """A titled part of the report: text paragraphs, tables and images, in that order."""

    title: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[tuple[str, pd.DataFrame]] = ()
    images: Sequence[tuple[str, Path]] = ()
    raw_html: str = ""


@dataclass
class Report:
    """A whole report."""

    title: str
    summary: Mapping[str, object] = field(default_factory=dict)
    sections: list[ReportSection] = field(default_factory=list)


def image_html(path: str | Path, caption: str = "") -> str:
    """An ``<img>`` with the PNG embedded as base64 (the report stays one file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption class='note'>{html.escape(caption)}</figcaption>" if caption else ""
    img = f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'/>"
    return f"<figure>{img}{cap}</figure>"


def table_html(frame: pd.DataFrame, float_format: str = "{:.4f}") -> str:
    """A frame as an HTML table (floats formatted, text escaped)."""
    return frame.to_html(
        index=False,
        border=0,
        float_format=lambda v: float_format.format(v),
        na_rep="–",
        escape=True,
    )


def render_report(report: Report) -> str:
    """The report as one HTML document."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class='note'>written {datetime.now(UTC).isoformat(timespec='seconds')}</p>",
    ]
    if report.summary:
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in report.summary.items()
        )
        parts.append(f"<table>{rows}</table>")
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.extend(f"<p>{html.escape(p)}</p>" for p in section.paragraphs)
        for caption, frame in section.tables:
            parts.append(f"<h3>{html.escape(caption)}</h3>{table_html(frame)}")
        for caption, path in section.images:
            if Path(path).is_file():
                parts.append(image_html(path, caption))
        parts.append(section.raw_html)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(report), encoding="utf-8")
    return path
