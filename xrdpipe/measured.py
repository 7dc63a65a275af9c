"""Measured powder patterns: readers and the preprocessing onto a model's input grid.

Readers: two-column ``.xy``/``.csv``/``.txt``/``.dat`` and PANalytical ``.xrdml``.

Pure functions over numpy arrays; the only IO is reading the file in :func:`read_pattern`.
Every failure is a :class:`~xrdpipe.errors.MeasuredPatternError` whose message names the file,
what is wrong (with the value) and what is accepted.

Preprocessing (:func:`prepare_pattern`), in order:

1. Wavelength: the file's effective wavelength ``lambda_f`` (see below) and the model's
   ``lambda_m``. If they differ, every measured angle is moved through its d-spacing (Bragg):
   ``d = lambda_f / (2 sin(theta_f))`` and ``2theta_m = 2 asin(lambda_m / (2 d))``; points with
   ``lambda_m / (2d) >= 1`` (no reflection at the model's wavelength) are dropped. Intensities
   are kept as measured (no Lorentz-polarisation correction between wavelengths).
2. Coverage: the converted range must cover the model's grid within
   :data:`COVERAGE_TOLERANCE_DEG` at each end (the edge value is held over that gap). With
   ``allow_partial=True`` a pattern covering at least :data:`MIN_PARTIAL_COVERAGE` of the grid
   is accepted: uncovered grid points get the pattern's minimum (0 after normalisation) and
   the covered fraction is reported.
3. Linear interpolation onto the model's uniform two-theta grid (``numpy.interp``).
4. Optional background subtraction (off by default, as the phase-fraction model was trained
   with a background): :func:`rolling_minimum_background`.
5. Normalisation as in training: min-max to ``[0, 1]``. The phase-fraction CNN's training
   patterns are min-max rescaled after noise and background
   (:func:`xrdpipe.patterns.render.render_profiles`); the a-CNN's are clean profiles divided
   by their maximum (minimum 0), for which max- and min-max normalisation agree, so min-max
   (which also removes a measured pattern's constant offset) matches both.

Wavelengths. A ``.xrdml`` file gives ``usedWavelength`` with ``kAlpha1``, ``kAlpha2`` and
``ratioKAlpha2KAlpha1``. Models trained on single peaks at the simulation wavelength (the
default ``CuKa`` = 1.54184 A is pymatgen's weighted K-alpha mean) see a doublet's centroid, so
the file's *weighted mean* ``(ka1 + r ka2) / (1 + r)`` is used; a model whose profile renders
the K-alpha doublet (``ka_doublet``) gets the file's ``kAlpha1`` mapped onto its ``ka1``. A
two-column file has no wavelength: the user's ``wavelength`` if given, else the model's (no
conversion; a note says so).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xrdpipe.errors import MeasuredPatternError

TEXT_EXTENSIONS = (".xy", ".csv", ".txt", ".dat")
"""Two-column text formats: two-theta (degrees), intensity; extra columns are ignored."""
XML_EXTENSIONS = (".xrdml",)
"""PANalytical XRDML (any 1.x namespace)."""
ACCEPTED = ", ".join(TEXT_EXTENSIONS + XML_EXTENSIONS)
CU_KA1 = 1.5406
"""Cu K-alpha1, angstrom (a common value to pass as ``wavelength`` for Cu data)."""
MIN_POINTS = 16
"""Fewest measured points accepted: fewer cannot describe a powder pattern."""
COVERAGE_TOLERANCE_DEG = 0.25
"""Largest gap, degrees two-theta, between the data and each end of the model grid that is
bridged by holding the edge value (a file measured 10-80 deg at another wavelength, or one
ending a step short, still fits a 10-80 deg model)."""
MIN_PARTIAL_COVERAGE = 0.5
"""With ``allow_partial``, the least fraction of the model grid the data must cover."""
WAVELENGTH_RTOL = 1e-6
"""Relative wavelength difference below which no Bragg conversion is done."""
BACKGROUND_WINDOW_DEG = 4.0
"""Default window of the rolling-minimum background, degrees (wider than any peak)."""
TINY = 1e-12
"""Guards a division by a flat pattern's zero range."""

_SEPARATORS = re.compile(r"[,\s]+")
_DECIMAL_COMMA = re.compile(r"^[-+]?\d+,\d*(?:[eE][-+]?\d+)?$")


@dataclass(frozen=True)
class MeasuredPattern:
    """A measured pattern as read from a file.

    Attributes:
        source: the file (for messages).
        two_theta: strictly increasing angles, degrees.
        intensity: intensities (counts, or counts per second when a counting time was given).
        ka1: K-alpha1 (or the only) wavelength, angstrom; ``None`` if the file gives none.
        ka2: K-alpha2 wavelength, angstrom, if given.
        ka2_ratio: I(K-alpha2) / I(K-alpha1), if given.
        wavelength_source: ``file``, ``user`` or ``none``.
        notes: what the reader decided (reversed scan, counting time, ignored scans).
    """

    source: str
    two_theta: np.ndarray
    intensity: np.ndarray
    ka1: float | None = None
    ka2: float | None = None
    ka2_ratio: float | None = None
    wavelength_source: str = "none"
    notes: tuple[str, ...] = ()

    def wavelength(self, doublet_model: bool = False) -> float | None:
        """The effective wavelength, angstrom (``None`` if unknown).

        The K-alpha weighted mean, or ``ka1`` for a model trained on rendered doublets
        (``doublet_model``).
        """
        if self.ka1 is None:
            return None
        if doublet_model or self.ka2 is None or not self.ka2_ratio:
            return self.ka1
        return (self.ka1 + self.ka2_ratio * self.ka2) / (1.0 + self.ka2_ratio)


@dataclass(frozen=True)
class ModelGrid:
    """The input grid a model was trained on.

    Attributes:
        two_theta_min: first grid point, degrees.
        two_theta_max: last grid point, degrees.
        n_points: grid points (uniform, both ends included).
        wavelength: the wavelength the training peaks were computed at, angstrom.
        ka_doublet: the training profiles rendered K-alpha1 + K-alpha2 doublets.
    """

    two_theta_min: float
    two_theta_max: float
    n_points: int
    wavelength: float
    ka_doublet: bool = False

    @property
    def two_theta(self) -> np.ndarray:
        """The grid, degrees, float64."""
        return np.linspace(self.two_theta_min, self.two_theta_max, self.n_points)

    @property
    def step_deg(self) -> float:
        """Grid spacing, degrees."""
        return (self.two_theta_max - self.two_theta_min) / (self.n_points - 1)


@dataclass(frozen=True)
class PreparedPattern:
    """A measured pattern on a model's grid, normalised as the training inputs.

    Attributes:
        x: ``(n_points,)`` float32 in ``[0, 1]``.
        covered: ``(n_points,)`` bool, grid points inside the measured range.
        file_wavelength: the wavelength the angles were read at, angstrom.
        model_wavelength: the model's wavelength, angstrom.
        measured_range: the measured range after Bragg conversion, degrees.
        notes: what was assumed or done (wavelength, coverage, background).
    """

    x: np.ndarray
    covered: np.ndarray
    file_wavelength: float
    model_wavelength: float
    measured_range: tuple[float, float]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def coverage(self) -> float:
        """Fraction of the grid covered by data."""
        return float(self.covered.mean())


def _error(source: str | Path, what: str, accepted: str) -> MeasuredPatternError:
    return MeasuredPatternError(f"{source}: {what}; accepted: {accepted}")


# --- readers -------------------------------------------------------------------------------


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


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element: ET.Element, name: str) -> ET.Element | None:
    """First descendant with local tag ``name`` (namespace-agnostic)."""
    for child in element.iter():
        if child is not element and _local(child.tag) == name:
            return child
    return None


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _numbers(element: ET.Element | None, what: str, source: str) -> np.ndarray:
    if element is None or element.text is None or not element.text.strip():
        raise _error(source, f"<{what}> is missing or empty", "an XRDML scan with numeric data")
    try:
        return np.asarray([float(v) for v in element.text.split()], dtype=np.float64)
    except ValueError as exc:
        raise _error(source, f"<{what}> holds a non-number ({exc})", "numbers") from exc


def parse_xrdml(text: str | bytes, source: str = "<xrdml>") -> MeasuredPattern:
    """A PANalytical XRDML document to a :class:`MeasuredPattern` (first scan only).

    Reads ``usedWavelength`` (``kAlpha1``, ``kAlpha2``, ``ratioKAlpha2KAlpha1``; a bare
    ``kAlpha1``/``kBeta`` is accepted), the scan's ``positions axis="2Theta"`` as
    ``listPositions`` or ``startPosition``/``endPosition`` (uniform), and ``intensities`` or
    ``counts``; intensities are divided by ``commonCountingTime`` or per-point
    ``countingTimes`` when given (counts per second).

    Raises:
        MeasuredPatternError: malformed or truncated XML, no scan, no 2Theta axis, or
            positions and intensities of different lengths.
    """
    accepted = "PANalytical XRDML 1.x with a 2Theta scan"
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise _error(
            source, f"malformed or truncated XML at line {line}, column {column} ({exc})", accepted
        ) from exc
    if _local(root.tag) != "xrdMeasurements":
        raise _error(
            source, f"root element is <{_local(root.tag)}>, not <xrdMeasurements>", accepted
        )
    ka1 = ka2 = ratio = None
    used = _find(root, "usedWavelength")
    if used is not None:
        values = {}
        for child in used:
            try:
                values[_local(child.tag)] = float((child.text or "").strip())
            except ValueError:
                continue
        ka1 = values.get("kAlpha1")
        ka2 = values.get("kAlpha2")
        ratio = values.get("ratioKAlpha2KAlpha1")
    notes: list[str] = []
    scans = [e for e in root.iter() if _local(e.tag) == "scan"]
    if not scans:
        raise _error(source, "no <scan> element", accepted)
    if len(scans) > 1:
        notes.append(f"{len(scans)} scans in the file; the first is used")
    data = _find(scans[0], "dataPoints")
    if data is None:
        raise _error(source, "the scan has no <dataPoints>", accepted)
    axis = next(
        (p for p in _children(data, "positions") if p.get("axis", "").lower() == "2theta"), None
    )
    if axis is None:
        found = [p.get("axis") for p in _children(data, "positions")]
        raise _error(source, f'no <positions axis="2Theta"> (axes found: {found})', accepted)
    counts_el = _find(data, "intensities")
    if counts_el is None:
        counts_el = _find(data, "counts")
    intensity = _numbers(counts_el, "intensities or counts", source)
    listed = _find(axis, "listPositions")
    if listed is not None:
        two_theta = _numbers(listed, "listPositions", source)
    else:
        start = _numbers(_find(axis, "startPosition"), "startPosition", source)[0]
        end = _numbers(_find(axis, "endPosition"), "endPosition", source)[0]
        two_theta = np.linspace(start, end, len(intensity))
    if len(two_theta) != len(intensity):
        raise _error(
            source,
            f"{len(two_theta)} 2Theta positions but {len(intensity)} intensities",
            "one intensity per position",
        )
    common = _find(data, "commonCountingTime")
    per_point = _find(data, "countingTimes")
    if per_point is not None:
        times = _numbers(per_point, "countingTimes", source)
        if len(times) == len(intensity) and np.all(times > 0):
            intensity = intensity / times
            notes.append("intensities divided by the per-point counting times (counts/s)")
    elif common is not None:
        seconds = float(_numbers(common, "commonCountingTime", source)[0])
        if seconds > 0:
            intensity = intensity / seconds
            notes.append(f"intensities divided by the counting time {seconds:g} s (counts/s)")
    return MeasuredPattern(
        source=source,
        two_theta=two_theta,
        intensity=intensity,
        ka1=ka1,
        ka2=ka2,
        ka2_ratio=ratio,
        wavelength_source="file" if ka1 is not None else "none",
        notes=tuple(notes),
    )


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


# --- preprocessing -------------------------------------------------------------------------


def bragg_convert(
    two_theta: np.ndarray, from_wavelength: float, to_wavelength: float
) -> np.ndarray:
    """Two-theta at ``from_wavelength`` to the same d-spacings' two-theta at ``to_wavelength``.

    ``d = lambda_1 / (2 sin theta_1)``, ``theta_2 = asin(lambda_2 / (2 d))``; NaN where
    ``lambda_2 / (2 d) >= 1`` (the reflection does not exist at ``to_wavelength``). Degrees in,
    degrees out; angstrom for both wavelengths.
    """
    sin_new = (to_wavelength / from_wavelength) * np.sin(np.deg2rad(two_theta) / 2.0)
    out = np.full_like(np.asarray(two_theta, dtype=np.float64), np.nan)
    ok = sin_new < 1.0
    out[ok] = np.rad2deg(2.0 * np.arcsin(sin_new[ok]))
    return out


def rolling_minimum_background(intensity: np.ndarray, window_points: int) -> np.ndarray:
    """A smooth background under the peaks: a rolling-minimum opening, then a rolling mean.

    The rolling minimum over ``window_points`` (wider than a peak) removes the peaks; the
    rolling maximum of that (a morphological opening) restores any background that varies
    slowly over the window (a monotonic one exactly, where a bare minimum would lag by half a
    window); a rolling mean over a quarter window smooths the steps noise leaves. The result
    is clipped to never exceed the pattern.
    """
    from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

    size = max(3, int(window_points) | 1)
    base = maximum_filter1d(minimum_filter1d(intensity, size, mode="nearest"), size, mode="nearest")
    base = uniform_filter1d(base, max(1, size // 4), mode="nearest")
    return np.minimum(base, intensity)


def normalize_min_max(y: np.ndarray) -> np.ndarray:
    """Min-max rescaling to ``[0, 1]`` (the training inputs' normalisation); flat -> zeros."""
    low = float(y.min())
    return (y - low) / max(float(y.max()) - low, TINY)


def prepare_pattern(
    pattern: MeasuredPattern,
    grid: ModelGrid,
    *,
    background: bool = False,
    background_window_deg: float = BACKGROUND_WINDOW_DEG,
    allow_partial: bool = False,
) -> PreparedPattern:
    """Put a measured pattern onto a model's grid (see the module docstring for the steps).

    Args:
        pattern: a checked pattern (:func:`read_pattern`).
        grid: the model's grid and wavelength.
        background: subtract :func:`rolling_minimum_background` before normalising.
        background_window_deg: its window, degrees.
        allow_partial: accept a pattern covering at least :data:`MIN_PARTIAL_COVERAGE` of
            the grid (uncovered points set to the minimum).

    Raises:
        MeasuredPatternError: the data do not cover the model's range (stating both ranges).
    """
    notes: list[str] = []
    file_wl = pattern.wavelength(grid.ka_doublet)
    if file_wl is None:
        file_wl = grid.wavelength
        notes.append(
            f"no wavelength given: assumed the model's {grid.wavelength:.5f} A (pass "
            "--wavelength to convert)"
        )
    tt, y = pattern.two_theta, pattern.intensity
    model_wl = grid.wavelength
    if abs(file_wl - model_wl) > WAVELENGTH_RTOL * model_wl:
        tt = bragg_convert(tt, file_wl, model_wl)
        keep = np.isfinite(tt)
        tt, y = tt[keep], y[keep]
        notes.append(f"two-theta converted from {file_wl:.5f} A to {model_wl:.5f} A (Bragg)")
        if tt.size < MIN_POINTS:
            raise _error(
                pattern.source,
                f"only {tt.size} points have a reflection angle at the model's wavelength "
                f"{model_wl:.5f} A",
                f"at least {MIN_POINTS} points",
            )
    lo, hi = float(tt[0]), float(tt[-1])
    grid_tt = grid.two_theta
    need = f"{grid.two_theta_min:g}-{grid.two_theta_max:g} deg at {model_wl:.5f} A"
    tol = COVERAGE_TOLERANCE_DEG
    covered = (grid_tt >= lo - tol) & (grid_tt <= hi + tol)
    full = lo <= grid.two_theta_min + tol and hi >= grid.two_theta_max - tol
    if not full:
        fraction = float(covered.mean())
        what = (
            f"covers {lo:.2f}-{hi:.2f} deg two-theta at {model_wl:.5f} A, the model needs {need}"
            f" (tolerance {tol} deg at each end)"
        )
        if not allow_partial:
            raise _error(
                pattern.source,
                what,
                f"a pattern spanning the model's range, or --partial for one covering at "
                f"least {MIN_PARTIAL_COVERAGE:.0%} of it",
            )
        if fraction < MIN_PARTIAL_COVERAGE:
            raise _error(
                pattern.source,
                f"{what}: only {fraction:.0%} of the grid",
                f"with --partial, at least {MIN_PARTIAL_COVERAGE:.0%} of the model's range",
            )
        notes.append(f"partial coverage: {fraction:.0%} of the grid ({lo:.2f}-{hi:.2f} deg)")
    x = np.interp(grid_tt, tt, y)
    if background:
        window = max(3, int(round(background_window_deg / grid.step_deg)))
        x = x - rolling_minimum_background(x, window)
        notes.append(f"rolling-minimum background subtracted ({background_window_deg:g} deg)")
    if not covered.all():
        x = np.where(covered, x, x[covered].min())
    return PreparedPattern(
        x=normalize_min_max(x).astype(np.float32),
        covered=covered,
        file_wavelength=float(file_wl),
        model_wavelength=float(model_wl),
        measured_range=(lo, hi),
        notes=tuple(notes),
    )
