r"""Peaks in the residual that no offered phase explains.

After a fit, ``r = y_obs - y_calc`` should be counting noise, ``sigma_i^2 = max(y_calc,i, 1)``
(the model's Poisson variance). A peak of shape ``t`` (a pseudo-Voigt of height 1 with the
fitted FWHM, eta 0.5, over ``+-3`` FWHM, minus its mean over that window so that it sums to
zero) centred at point ``i`` is tested by the matched filter (the weighted least-squares
amplitude and its significance):

    a_i = sum_j t_j r_(i+j) / sigma_(i+j)^2 / sum_j t_j^2 / sigma_(i+j)^2,
    z_i = sum_j t_j r_(i+j) / sigma_(i+j)^2 / sqrt( sum_j t_j^2 / sigma_(i+j)^2 ).

The zero sum makes the test blind to residuals that vary slowly over the window (a
background the Chebyshev does not follow, an amorphous hump): without it, the independent
benchmark's scans, whose background has a broad hump, gave 20-30 "peaks" 0.3 degrees
apart along the hump. For a peak on a flat residual the amplitude is still its height.
Local maxima with ``z >= threshold_sigma`` (default 5 local noise sigmas: on a 3500-point
scan, ~500 independent peak positions, pure noise passes it with probability ~1e-4) are
residual peaks; peaks closer than one FWHM are merged. Each is reported with its height
``a`` (counts above the fit), that height relative to the strongest calculated peak (net of
background), and whether the fit already puts a peak there: ``explained`` when the
calculated phases' net intensity at that angle is at least the residual's height (a misfit
of a known peak, e.g. its intensity or shape), otherwise unexplained, a candidate missing
phase. A new phase's peak hidden under a stronger calculated one is not found (the limit of
any residual test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrdpipe.patterns.physics import pseudo_voigt_height_profile
from xrdpipe.refinement.model import line_widths
from xrdpipe.refinement.results import RefinementResult

THRESHOLD_SIGMA = 5.0
"""Default significance, in local noise sigmas of the matched filter."""

TEMPLATE_ETA = 0.5
"""Lorentzian fraction of the test peak (between the usual 0.2-0.8)."""

TEMPLATE_HALF_WIDTH_FWHM = 3.0
"""Half-width of the test peak's window, FWHMs."""


@dataclass(frozen=True)
class ResidualPeak:
    """A significant peak in the residual.

    Attributes:
        two_theta: its position, degrees.
        height: counts above the fit at its centre (matched-filter amplitude).
        relative_height: ``height`` over the strongest calculated peak (net of background).
        significance: ``z``, in local noise sigmas.
        explained: whether a calculated peak at least as high sits there (a misfit).
        nearest_phase: the phase contributing most at that angle (None if none does).
    """

    two_theta: float
    height: float
    relative_height: float
    significance: float
    explained: bool
    nearest_phase: str | None


def fitted_fwhm(result: RefinementResult, two_theta: float | None = None) -> float:
    """The median FWHM of the present phases at ``two_theta`` (default mid-scan), degrees."""
    angle = float(np.mean(result.two_theta[[0, -1]])) if two_theta is None else two_theta
    fwhms = [
        float(line_widths(np.array([angle]), np.array(list(p.widths.values())))[0][0])
        for p in result.phases
        if p.scale > 0
    ]
    if not fwhms:
        raise ValueError("the refinement has no phase with a positive scale")
    return float(np.median(fwhms))


def residual_peaks(
    result: RefinementResult,
    threshold_sigma: float = THRESHOLD_SIGMA,
    fwhm_deg: float | None = None,
    *,
    unexplained_only: bool = True,
) -> list[ResidualPeak]:
    """Significant peaks of a refinement's residual (module docstring).

    Args:
        result: the refinement.
        threshold_sigma: the least significance ``z``, local noise sigmas.
        fwhm_deg: the test peak's FWHM (default :func:`fitted_fwhm`).
        unexplained_only: drop the peaks the fit explains (misfits of calculated peaks).

    Returns:
        The peaks, strongest ``z`` first.
    """
    if threshold_sigma <= 0:
        raise ValueError(f"threshold_sigma {threshold_sigma!r} must be positive")
    two_theta, residual = result.two_theta, result.residual
    step = float(np.median(np.diff(two_theta)))
    fwhm = fitted_fwhm(result) if fwhm_deg is None else fwhm_deg
    half = max(int(np.ceil(TEMPLATE_HALF_WIDTH_FWHM * fwhm / step)), 1)
    offsets = np.arange(-half, half + 1) * step
    template = pseudo_voigt_height_profile(offsets, fwhm, TEMPLATE_ETA)
    template = template - template.mean()  # zero sum: a broad misfit (background) is no peak
    inverse_variance = 1.0 / np.maximum(result.calculated, 1.0)
    # correlate (template symmetric): sums over the window around each point
    numerator = np.convolve(residual * inverse_variance, template, mode="same")
    denominator = np.convolve(inverse_variance, template * template, mode="same")
    amplitude = numerator / denominator
    z = numerator / np.sqrt(denominator)
    z[:half] = z[-half:] = 0.0  # windows that leave the scan
    is_peak = (z >= threshold_sigma) & (z >= np.roll(z, 1)) & (z >= np.roll(z, -1))
    candidates = np.flatnonzero(is_peak)
    candidates = candidates[np.argsort(-z[candidates])]
    chosen: list[int] = []
    for i in candidates:
        if all(abs(two_theta[i] - two_theta[j]) > fwhm for j in chosen):
            chosen.append(int(i))
    net = result.calculated - result.background
    strongest = float(net.max()) if net.size else 0.0
    contributions = np.stack([p.contribution for p in result.phases], axis=0)
    peaks = []
    for i in chosen:
        height = float(amplitude[i])
        explained = bool(net[i] >= height)
        if unexplained_only and explained:
            continue
        nearest = int(np.argmax(contributions[:, i]))
        peaks.append(
            ResidualPeak(
                two_theta=float(two_theta[i]),
                height=height,
                relative_height=height / strongest if strongest > 0 else np.inf,
                significance=float(z[i]),
                explained=explained,
                nearest_phase=result.phases[nearest].name
                if contributions[nearest, i] > 0
                else None,
            )
        )
    return peaks
