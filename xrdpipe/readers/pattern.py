"""Reading a measured pattern file: dispatch on the extension, then the common checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from xrdpipe.readers.base import MeasuredPattern, _error
from xrdpipe.readers.text import TEXT_EXTENSIONS, parse_xy
from xrdpipe.readers.xrdml import XML_EXTENSIONS, parse_xrdml

__all__ = ["ACCEPTED", "CU_KA1", "MIN_POINTS", "MeasuredPattern", "check_pattern", "read_pattern"]

ACCEPTED = ", ".join(TEXT_EXTENSIONS + XML_EXTENSIONS)
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
    return MeasuredPattern(
        src,
        tt,
        y,
        pattern.ka1,
        pattern.ka2,
        pattern.ka2_ratio,
        pattern.wavelength_source,
        tuple(notes),
    )


def read_pattern(path: str | Path, wavelength: float | None = None) -> MeasuredPattern:
    """Read and check a measured pattern file.

    Args:
        path: a ``.xy``, ``.csv``, ``.txt``, ``.dat`` (two columns) or ``.xrdml`` file.
        wavelength: angstrom; the wavelength of a two-column file (ignored for XRDML, which
            carries its own unless it has none). ``None``: unknown (the model's is assumed).

    Raises:
        MeasuredPatternError: unreadable file, unknown extension, or a bad pattern.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TEXT_EXTENSIONS + XML_EXTENSIONS:
        raise _error(path, f"extension {suffix or '(none)'!r} is not supported", ACCEPTED)
    if wavelength is not None and not (math.isfinite(wavelength) and 0.1 <= wavelength <= 5):
        raise _error(path, f"wavelength {wavelength} A is not plausible", "0.1 to 5 angstrom")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror or exc})", "a readable file") from exc
    if suffix in XML_EXTENSIONS:
        pattern = parse_xrdml(raw, str(path))
        if pattern.ka1 is None and wavelength is not None:
            pattern = MeasuredPattern(
                pattern.source,
                pattern.two_theta,
                pattern.intensity,
                wavelength,
                wavelength_source="user",
                notes=pattern.notes,
            )
        elif wavelength is not None:
            pattern = MeasuredPattern(
                *(
                    getattr(pattern, f)
                    for f in (
                        "source",
                        "two_theta",
                        "intensity",
                        "ka1",
                        "ka2",
                        "ka2_ratio",
                        "wavelength_source",
                    )
                ),
                notes=(
                    *pattern.notes,
                    f"--wavelength {wavelength} ignored: the file gives its own",
                ),
            )
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = raw.decode("latin-1")
            except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
                raise _error(path, "is not text", "UTF-8 or Latin-1 text") from exc
        if "\x00" in text:
            raise _error(path, "is binary (NUL bytes), not text", "two-column text")
        two_theta, intensity = parse_xy(text, str(path))
        pattern = MeasuredPattern(
            str(path),
            two_theta,
            intensity,
            wavelength,
            wavelength_source="none" if wavelength is None else "user",
        )
    return check_pattern(pattern)
