"""Reading a measured pattern file: dispatch on the extension, then the common checks."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xrdpipe.readers.base import MeasuredPattern, _error
from xrdpipe.readers.brml import BRML_EXTENSIONS, parse_brml
from xrdpipe.readers.bruker_raw import RAW_EXTENSIONS, parse_bruker_raw
from xrdpipe.readers.rigaku import RAS_EXTENSIONS, RASX_EXTENSIONS, parse_ras, parse_rasx
from xrdpipe.readers.text import TEXT_EXTENSIONS, XYE_EXTENSIONS, parse_xy, parse_xye
from xrdpipe.readers.xrdml import XML_EXTENSIONS, parse_xrdml

__all__ = [
    "ACCEPTED",
    "CU_KA1",
    "EXTENSIONS",
    "MIN_POINTS",
    "MeasuredPattern",
    "check_pattern",
    "read_pattern",
]

EXTENSIONS = (
    TEXT_EXTENSIONS
    + XML_EXTENSIONS
    + XYE_EXTENSIONS
    + BRML_EXTENSIONS
    + RAW_EXTENSIONS
    + RAS_EXTENSIONS
    + RASX_EXTENSIONS
)
"""Every extension :func:`read_pattern` reads (lower case; matched case-insensitively)."""
ACCEPTED = ", ".join(EXTENSIONS)
CU_KA1 = 1.5406
"""Cu K-alpha1, angstrom (a common value to pass as ``wavelength`` for Cu data)."""
MIN_POINTS = 16
"""Fewest measured points accepted: fewer cannot describe a powder pattern."""


def check_pattern(pattern: MeasuredPattern) -> MeasuredPattern:
    """Check finite values, enough points and strictly monotonic angles.

    A descending scan is reversed; returns the pattern with increasing two-theta.

    Raises:
        MeasuredPatternError: NaN or infinite values, fewer than :data:`MIN_POINTS` points,
            angles that are not strictly monotonic, or angles outside (0, 180) degrees.
    """
    src = pattern.source
    tt, y = pattern.two_theta, pattern.intensity
    for name, values in (("two-theta", tt), ("intensity", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise _error(
                src,
                f"{bad.size} NaN or infinite {name} value(s), first at point {bad[0] + 1} "
                f"({values[bad[0]]})",
                "finite numbers only",
            )
    if tt.size < MIN_POINTS:
        raise _error(src, f"only {tt.size} data points", f"at least {MIN_POINTS} points")
    notes = list(pattern.notes)
    step = np.diff(tt)
    if np.all(step < 0):
        tt, y = tt[::-1].copy(), y[::-1].copy()
        step = np.diff(tt)
        notes.append("descending scan reversed")
    if not np.all(step > 0):
        i = int(np.flatnonzero(step <= 0)[0])
        raise _error(
            src,
            f"two-theta is not strictly increasing: point {i + 2} ({tt[i + 1]:g} deg) follows "
            f"{tt[i]:g} deg",
            "strictly increasing (or strictly decreasing) two-theta without repeats",
        )
    if tt[0] <= 0 or tt[-1] >= 180:
        raise _error(
            src,
            f"two-theta runs {tt[0]:g}-{tt[-1]:g} deg",
            "angles in degrees between 0 and 180",
        )
    return dataclasses.replace(pattern, two_theta=tt, intensity=y, notes=tuple(notes))


def _text(raw: bytes, path: Path, accepted: str) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # decodes any bytes
    if "\x00" in text:
        raise _error(path, "is binary (NUL bytes), not text", accepted)
    return text


def _read_xy(raw: bytes, source: str) -> MeasuredPattern:
    two_theta, intensity = parse_xy(_text(raw, Path(source), "two-column text"), source)
    return MeasuredPattern(source, two_theta, intensity)


_PARSERS: dict[str, Callable[[bytes, str], MeasuredPattern]] = {
    **dict.fromkeys(TEXT_EXTENSIONS, _read_xy),
    **dict.fromkeys(
        XYE_EXTENSIONS, lambda raw, src: parse_xye(_text(raw, Path(src), "GSAS .xye text"), src)
    ),
    **dict.fromkeys(XML_EXTENSIONS, parse_xrdml),
    **dict.fromkeys(BRML_EXTENSIONS, parse_brml),
    **dict.fromkeys(RAW_EXTENSIONS, parse_bruker_raw),
    **dict.fromkeys(RAS_EXTENSIONS, lambda raw, src: parse_ras(raw.decode("latin-1"), src)),
    **dict.fromkeys(RASX_EXTENSIONS, parse_rasx),
}


def read_pattern(path: str | Path, wavelength: float | None = None) -> MeasuredPattern:
    """Read and check a measured pattern file.

    The reader is chosen by the extension (case-insensitive, see :data:`EXTENSIONS`); a
    ``.raw`` file is then told apart by its magic bytes (``RAW1.01``: version 3, ``RAW4.00``:
    version 4).

    Args:
        path: a ``.xy``, ``.csv``, ``.txt``, ``.dat`` (two columns), GSAS ``.xye``,
            PANalytical ``.xrdml``, Bruker ``.brml`` or ``.raw``, or Rigaku ``.ras`` or
            ``.rasx`` file.
        wavelength: angstrom; the wavelength of a file that carries none (ignored, with a
            note, for a file that gives its own). ``None``: unknown (the model's is assumed).

    Raises:
        MeasuredPatternError: unreadable file, unknown extension, or a bad file or pattern.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _PARSERS:
        raise _error(path, f"extension {suffix or '(none)'!r} is not supported", ACCEPTED)
    if wavelength is not None and not (math.isfinite(wavelength) and 0.1 <= wavelength <= 5):
        raise _error(path, f"wavelength {wavelength} A is not plausible", "0.1 to 5 angstrom")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror or exc})", "a readable file") from exc
    pattern = _PARSERS[suffix](raw, str(path))
    if wavelength is not None:
        if pattern.ka1 is None:
            pattern = dataclasses.replace(
                pattern, ka1=wavelength, ka2=None, ka2_ratio=None, wavelength_source="user"
            )
        else:
            pattern = dataclasses.replace(
                pattern,
                notes=(
                    *pattern.notes,
                    f"--wavelength {wavelength} ignored: the file gives its own",
                ),
            )
    return check_pattern(pattern)
