"""A measured pattern on a model's input grid, normalised as the training inputs.

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

from dataclasses import dataclass, field

import numpy as np

from xrdpipe.readers.base import MeasuredPattern, _error
from xrdpipe.readers.pattern import MIN_POINTS

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
