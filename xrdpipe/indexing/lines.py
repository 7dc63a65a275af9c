r"""Diffraction line positions of a measured scan: the input of powder indexing.

A line list for indexing needs the K-alpha1 position of each resolved reflection, not the
maxima of the doublet. :func:`observed_lines`:

1. puts the scan on a uniform grid (its median step) and subtracts a background: a
   morphological opening (running minimum, then running maximum, over ``+-BACKGROUND_DEG``)
   smoothed by a running mean of the same width;
2. strips K-alpha2 (Rachinger 1948): walking up in angle, ``I1(2theta) = I(2theta) - R
   I1(2theta')`` where ``2theta'`` is the K-alpha1 angle of the d-spacing whose K-alpha2
   line lies at ``2theta`` (``sin theta' = (lambda1 / lambda2) sin theta``) and ``R`` the
   intensity ratio;
3. finds maxima of the stripped scan, smoothed over ``SMOOTH_DEG``, that stand out by a
   prominence of at least ``min_prominence`` of the strongest line and ``NOISE_SIGMAS`` noise
   levels (``1.4826 MAD`` of the first differences over ``sqrt 2``, on the unsmoothed
   background-free scan);
4. places each maximum by the vertex of the parabola through the three highest points.

All in degrees two-theta; wavelengths in angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import find_peaks

from xrdpipe.patterns.config import CU_KA1, CU_KA2, KA2_KA1_RATIO
from xrdpipe.readers.prepare import bragg_convert

BACKGROUND_DEG = 1.0
"""Half-width of the background's opening, degrees (wider than any single line)."""
SMOOTH_DEG = 0.02
"""Half-width of the running mean applied before the maxima are found, degrees."""
NOISE_SIGMAS = 6.0
"""A line stands out by at least this many noise levels (its prominence)."""
MIN_SEPARATION_DEG = 0.05
"""Two maxima closer than this are one line."""
CU_WAVELENGTHS = (1.54056, 1.5406, 1.5418, 1.54184, 1.54187)
"""Copper K-alpha1 and K-alpha means as files and users write them, angstrom."""


@dataclass(frozen=True)
class ObservedLines:
    """The lines of one scan, in increasing two-theta.

    Attributes:
        two_theta: K-alpha1 positions, degrees.
        height: heights above the background after the K-alpha2 strip (scan units).
        wavelength: the K-alpha1 wavelength the positions refer to, angstrom.
    """

    two_theta: np.ndarray
    height: np.ndarray
    wavelength: float

    def __len__(self) -> int:
        return int(self.two_theta.size)

    @property
    def q(self) -> np.ndarray:
        """``Q = 1 / d^2 = (2 sin theta / lambda)^2`` of each line, angstrom^-2."""
        return (2.0 * np.sin(np.deg2rad(self.two_theta) / 2.0) / self.wavelength) ** 2


def scan_wavelengths(
    ka1: float, ka2: float | None, ka2_ratio: float | None
) -> tuple[float, float | None, float, str | None]:
    """The K-alpha1, K-alpha2 and ratio to index a scan with, and a note when assumed.

    A scan that names its doublet is taken as it is. One that gives only a copper
    wavelength (:data:`CU_WAVELENGTHS`, 1e-4 angstrom) was measured, as nearly every lab scan
    with a copper tube, with both lines: the project's copper doublet (``CU_KA1``, ``CU_KA2``,
    ``KA2_KA1_RATIO`` of :mod:`xrdpipe.patterns.config`) is assumed and said. Any other
    single wavelength is taken as monochromatic (no K-alpha2 strip).
    """
    if ka2 is not None:
        return ka1, ka2, ka2_ratio if ka2_ratio else KA2_KA1_RATIO, None
    if any(abs(ka1 - w) < 1e-4 for w in CU_WAVELENGTHS):
        note = (
            f"indexing assumed the Cu K-alpha doublet ({CU_KA1}, {CU_KA2} A, ratio "
            f"{KA2_KA1_RATIO}): the scan gives only {ka1} A"
        )
        return CU_KA1, CU_KA2, KA2_KA1_RATIO, note
    return ka1, None, 0.0, None


def _uniform(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps = np.diff(two_theta)
    if two_theta.ndim != 1 or two_theta.shape != intensity.shape or two_theta.size < 16:
        raise ValueError(
            f"two_theta and intensity must be 1-D of one length >= 16, got "
            f"{two_theta.shape} and {intensity.shape}"
        )
    if not np.all(steps > 0):
        raise ValueError("two_theta must increase strictly")
    step = float(np.median(steps))
    if np.allclose(steps, step, rtol=1e-3):
        return two_theta, intensity
    grid = np.arange(two_theta[0], two_theta[-1] + step / 2, step)
    return grid, np.interp(grid, two_theta, intensity)


def subtract_background(intensity: np.ndarray, step_deg: float) -> np.ndarray:
    """The scan minus its opening (running min, then max, then mean over ``+-BACKGROUND_DEG``)."""
    size = 2 * max(1, int(round(BACKGROUND_DEG / step_deg))) + 1
    opened = maximum_filter1d(minimum_filter1d(intensity, size, mode="nearest"), size)
    return intensity - uniform_filter1d(opened, size, mode="nearest")


def strip_ka2(
    two_theta: np.ndarray, intensity: np.ndarray, ka1: float, ka2: float, ratio: float
) -> np.ndarray:
    """Rachinger's K-alpha2 strip of a background-free scan on a uniform grid (module doc)."""
    partner = bragg_convert(two_theta, ka2, ka1)  # the K-alpha1 line each point's K-alpha2 is of
    start, step = float(two_theta[0]), float(two_theta[1] - two_theta[0])
    position = (partner - start) / step
    out = np.array(intensity, dtype=np.float64)
    for i in range(out.size):
        p = position[i]
        if not p >= 0.0:
            continue
        j = int(p)
        f = p - j
        if j + 1 < i:
            out[i] -= ratio * ((1.0 - f) * out[j] + f * out[j + 1])
    return out


def noise_level(intensity: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """``1.4826 MAD`` of the first differences over ``sqrt 2``: the noise of one point.

    Along the last axis (one value per scan of a ``(B, n)`` stack), at least ``floor``.
    """
    d = np.diff(intensity, axis=-1)
    mad = np.median(np.abs(d - np.median(d, axis=-1, keepdims=True)), axis=-1)
    return np.maximum(1.4826 * mad / math.sqrt(2.0), floor)


def observed_lines(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    ka1: float,
    ka2: float | None = None,
    ka2_ratio: float = 0.5,
    min_prominence: float = 0.01,
) -> ObservedLines:
    """The K-alpha1 line positions of a scan (module docstring).

    Args:
        two_theta: strictly increasing angles, degrees.
        intensity: the scan (counts; any scale).
        ka1: K-alpha1 wavelength, angstrom.
        ka2: K-alpha2 wavelength, angstrom; ``None`` for a monochromatic scan (no strip).
        ka2_ratio: I(K-alpha2) / I(K-alpha1).
        min_prominence: a line's prominence is at least this fraction of the strongest's.
    """
    x, y = _uniform(np.asarray(two_theta, float), np.asarray(intensity, float))
    step = float(x[1] - x[0])
    y = subtract_background(y, step)
    if ka2 is not None and ka2_ratio > 0.0:
        y = strip_ka2(x, y, ka1, ka2, ka2_ratio)
    sigma = float(noise_level(y))
    smooth = uniform_filter1d(y, 2 * max(1, int(round(SMOOTH_DEG / step))) + 1, mode="nearest")
    top = float(smooth.max())
    if top <= 0.0:
        return ObservedLines(np.zeros(0), np.zeros(0), ka1)
    index, _ = find_peaks(
        smooth,
        prominence=max(min_prominence * top, NOISE_SIGMAS * sigma),
        distance=max(1, int(round(MIN_SEPARATION_DEG / step))),
    )
    index = index[(index > 0) & (index < x.size - 1)]
    left, mid, right = smooth[index - 1], smooth[index], smooth[index + 1]
    curvature = left - 2.0 * mid + right
    offset = np.where(
        curvature < 0.0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1), 0.0
    )
    return ObservedLines(x[index] + np.clip(offset, -0.5, 0.5) * step, mid, ka1)
