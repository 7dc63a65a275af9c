"""Column text patterns: ``.xy``, ``.csv``, ``.txt``, ``.dat`` and GSAS ``.xye``."""

from __future__ import annotations

import re

import numpy as np

from xrdpipe.readers.base import MeasuredPattern, _error

TEXT_EXTENSIONS = (".xy", ".csv", ".txt", ".dat")
"""Two-column text formats: two-theta (degrees), intensity; extra columns are ignored."""

_SEPARATORS = re.compile(r"[,\s]+")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d*(?:[eE][-+]?\d+)?$")


def _fields(line: str) -> list[str]:
    """Split a data line on commas, whitespace or semicolons (``;`` allows decimal commas)."""
    if ";" in line:
        parts = [p.strip() for p in line.split(";")]
        return [p.replace(",", ".") if _DECIMAL_COMMA.match(p) else p for p in parts if p]
    return [p for p in _SEPARATORS.split(line.strip()) if p]


def _parse_plain(text: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Parse whitespace- or comma-separated numbers fast (numpy's C parser).

    Returns ``None`` when the text needs the line-by-line parser of :func:`parse_xy`
    (semicolons, bad lines: that parser words the errors).
    """
    if ";" in text:
        return None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip()[:1] == "#"]
    if lines:
        try:
            float(_fields(lines[0].split("#", 1)[0])[0])
        except (ValueError, IndexError):
            lines = lines[1:]  # a header (or a bad first line, which the slow path words)
    try:
        data = np.loadtxt(lines, comments="#", delimiter="," if "," in text else None, ndmin=2)
    except ValueError:
        return None
    if data.shape[0] == 0 or data.shape[1] < 2:
        return None
    return data[:, 0].astype(np.float64), data[:, 1].astype(np.float64)


def parse_xy(text: str, source: str = "<text>") -> tuple[np.ndarray, np.ndarray]:
    """Two columns of text to ``(two_theta, intensity)`` arrays, unchecked.

    Accepts ``#`` comments (whole lines or trailing), blank lines, one header line before the
    data, and commas, semicolons, tabs or spaces between fields (decimal commas with ``;``);
    columns after the second are ignored.

    Raises:
        MeasuredPatternError: a data line with fewer than two numbers, a second non-numeric
            line, or no data at all.
    """
    fast = _parse_plain(text)
    if fast is not None:
        return fast
    accepted = (
        "lines of 'two_theta intensity' numbers separated by spaces, tabs, commas or "
        "semicolons, '#' comments and one optional header line"
    )
    rows: list[tuple[float, float]] = []
    header_seen = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = _fields(line)
        try:
            values = [float(p) for p in parts[:2]]
        except ValueError:
            if not rows and not header_seen:
                header_seen = True
                continue
            raise _error(
                source, f"line {number} is not numeric: {raw.strip()[:60]!r}", accepted
            ) from None
        if len(values) < 2:
            raise _error(
                source, f"line {number} has {len(values)} column(s): {raw.strip()[:60]!r}", accepted
            )
        rows.append((values[0], values[1]))
    if not rows:
        raise _error(source, "no data lines found", accepted)
    data = np.asarray(rows, dtype=np.float64)
    return data[:, 0], data[:, 1]


XYE_EXTENSIONS = (".xye",)
"""GSAS three-column text: two-theta (degrees), intensity, its esd."""
_C_COMMENT = re.compile(r"^\s*/\*.*?\*/", re.DOTALL)


def parse_xye(text: str, source: str = "<xye>") -> MeasuredPattern:
    """A GSAS ``.xye`` document to a :class:`MeasuredPattern` (no wavelength).

    Columns: two-theta (degrees), intensity, esd (the esd is not used). Accepts a leading
    ``/* ... */`` comment block, ``#`` comments and one header line, as :func:`parse_xy`.

    Raises:
        MeasuredPatternError: an unterminated ``/*`` block, or any error of :func:`parse_xy`.
    """
    stripped = text.lstrip()
    if stripped.startswith("/*"):
        match = _C_COMMENT.match(stripped)
        if match is None:
            raise _error(
                source,
                "the '/*' comment block has no closing '*/'",
                "GSAS .xye: an optional /* ... */ block, then 'two_theta intensity esd' lines",
            )
        stripped = stripped[match.end() :]
    two_theta, intensity = parse_xy(stripped, source)
    return MeasuredPattern(source, two_theta, intensity, notes=("GSAS xye: esd column not used",))
