r"""Instrument and sample physics of a Bragg-Brentano powder diffractometer, as small formulas.

Each function takes numpy arrays or torch tensors (and returns the same kind; scalars
broadcast), so the engine (torch) and the readers (numpy) share one definition. Angles are
degrees two-theta unless a name says otherwise; ``theta = two_theta / 2``. This module
imports neither torch nor pymatgen: a numpy caller does not load torch.

Conventions (see ``docs/patterns.md``):

* observed position ``2theta_obs = 2theta_Bragg + zero_shift + delta_2theta_displacement``;
* sample displacement ``delta_2theta = -2 s cos(theta) / R`` (radians): s > 0, the sample
  surface above the focusing circle (towards the tube-detector line), moves peaks to
  **lower** two-theta;
* the store's intensities carry pymatgen's unpolarised Lorentz-polarisation factor
  ``(1 + cos^2 2theta) / (sin^2 theta cos theta)`` (no 1/2) and a fixed divergence slit.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

TCH_GAMMA_COEFFICIENTS = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)
"""Thompson, Cox & Hastings (1987): ``Gamma^5 = sum_i c_i G^(5-i) L^i``, i = 0..5."""

TCH_ETA_COEFFICIENTS = (1.36603, -0.47719, 0.11116)
"""TCH: ``eta = 1.36603 q - 0.47719 q^2 + 0.11116 q^3``, ``q = L / Gamma``."""

MIN_FWHM_DEG = 1e-4
"""Floor of a TCH FWHM, degrees: a zero width (all of U, V, W, X, Y at 0) renders nothing."""


def _lib(value: Any) -> Any:
    """``torch`` for a tensor (torch is then imported already), else ``numpy``."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return torch
    return np


def bragg_two_theta_deg(d_spacing: Any, wavelength: Any) -> Any:
    """Bragg angle ``2theta = 2 asin(lambda / (2 d))``, degrees; NaN where ``lambda > 2 d``.

    Args:
        d_spacing: interplanar spacing, angstrom.
        wavelength: angstrom (broadcasts).
    """
    lib = _lib(d_spacing)
    return lib.rad2deg(2.0 * lib.arcsin(wavelength / (2.0 * d_spacing)))


def displacement_shift_deg(
    two_theta: Any, displacement_mm: Any, goniometer_radius_mm: float
) -> Any:
    """Peak shift of a displaced sample: ``delta_2theta = -2 s cos(theta) / R`` (radians).

    Args:
        two_theta: peak positions, degrees.
        displacement_mm: s, mm; positive = sample surface above the focusing circle, which
            moves peaks to lower two-theta.
        goniometer_radius_mm: R, mm.

    Returns:
        The shift in degrees two-theta (negative for s > 0).
    """
    lib = _lib(two_theta)
    theta = lib.deg2rad(two_theta) / 2.0
    return lib.rad2deg(-2.0 * displacement_mm * lib.cos(theta) / goniometer_radius_mm)


def caglioti_gaussian_fwhm_deg(two_theta: Any, u_deg2: Any, v_deg2: Any, w_deg2: Any) -> Any:
    """Caglioti Gaussian FWHM: ``G = sqrt(U tan^2 theta + V tan theta + W)``, degrees.

    U, V, W in deg^2 (GSAS's are in centidegrees^2: divide by 1e4). A negative sum (V < 0
    with too small U or W) is clipped to 0.
    """
    lib = _lib(two_theta)
    tan_theta = lib.tan(lib.deg2rad(two_theta) / 2.0)
    square = (u_deg2 * tan_theta + v_deg2) * tan_theta + w_deg2
    return lib.sqrt(lib.clip(square, 0.0, None))


def lorentzian_fwhm_deg(two_theta: Any, x_deg: Any, y_deg: Any) -> Any:
    """Lorentzian FWHM: ``L = X / cos(theta) + Y tan(theta)``, degrees (size and strain)."""
    lib = _lib(two_theta)
    theta = lib.deg2rad(two_theta) / 2.0
    return x_deg / lib.cos(theta) + y_deg * lib.tan(theta)


def scherrer_x_deg(crystallite_size_nm: Any, wavelength: Any, scherrer_k: float) -> Any:
    """The TCH size term X of a crystallite size: ``X = K lambda / L`` radians, in degrees.

    So ``X / cos(theta)`` is the Scherrer FWHM. Wavelength in angstrom, size in nm.
    """
    return (180.0 / math.pi) * scherrer_k * wavelength * 0.1 / crystallite_size_nm


def tch_fwhm_eta(gauss_fwhm: Any, lorentz_fwhm: Any) -> tuple[Any, Any]:
    """Thompson-Cox-Hastings total FWHM and Lorentzian fraction of a pseudo-Voigt.

    ``Gamma = (G^5 + 2.69269 G^4 L + 2.42843 G^3 L^2 + 4.47163 G^2 L^3 + 0.07842 G L^4
    + L^5)^(1/5)`` and ``eta = 1.36603 q - 0.47719 q^2 + 0.11116 q^3`` with ``q = L / Gamma``
    (P. Thompson, D. E. Cox, J. B. Hastings, J. Appl. Cryst. 20, 79 (1987)). The
    pseudo-Voigt ``eta L(x; Gamma) + (1 - eta) G(x; Gamma)`` then approximates the Voigt
    of Gaussian FWHM G and Lorentzian FWHM L.

    Args:
        gauss_fwhm: G, degrees (>= 0).
        lorentz_fwhm: L, degrees (>= 0).

    Returns:
        ``(Gamma, eta)``, Gamma in degrees (at least :data:`MIN_FWHM_DEG`), eta in [0, 1].
    """
    lib = _lib(gauss_fwhm)
    g, lor = gauss_fwhm, lorentz_fwhm
    c = TCH_GAMMA_COEFFICIENTS
    # Horner in L with G powers: sum_i c_i G^(5-i) L^i
    total = c[5] * lor
    for i in (4, 3, 2, 1):
        total = (total + c[i] * g ** (5 - i)) * lor
    total = total + c[0] * g**5
    gamma = lib.clip(total, MIN_FWHM_DEG**5, None) ** 0.2
    q = lor / gamma
    a1, a2, a3 = TCH_ETA_COEFFICIENTS
    eta = ((a3 * q + a2) * q + a1) * q
    return gamma, lib.clip(eta, 0.0, 1.0)


def march_dollase_factor(cos_alpha: Any, ratio: Any) -> Any:
    """March-Dollase weight of one reflection: ``(r^2 cos^2 a + sin^2 a / r)^(-3/2)``.

    Args:
        cos_alpha: cosine of the angle between the reflection's scattering vector and the
            preferred-orientation axis (the sign does not matter).
        ratio: r; 1 gives 1 for every angle (random powder); the average over a sphere of
            directions is 1 for every r.
    """
    lib = _lib(cos_alpha)
    cos2 = lib.clip(cos_alpha * cos_alpha, 0.0, 1.0)
    return (ratio * ratio * cos2 + (1.0 - cos2) / ratio) ** -1.5


def monochromator_polarisation_ratio(two_theta: Any, monochromator_two_theta_deg: float) -> Any:
    """Re-weights pymatgen's unpolarised factor to a diffracted-beam monochromator.

    ``[(1 + cos^2 2theta_m cos^2 2theta) / (1 + cos^2 2theta_m)] / [(1 + cos^2 2theta) / 2]``:
    the monochromated polarisation over the unpolarised one, both 1 at 2theta = 0 (pymatgen
    stores ``(1 + cos^2 2theta)`` without the 1/2; the ratio is relative, so only its angle
    dependence matters once a pattern is normalised). ``2theta_m = 0`` gives 1.
    """
    lib = _lib(two_theta)
    cos2_2t = lib.cos(lib.deg2rad(two_theta)) ** 2
    cos2_2m = math.cos(math.radians(monochromator_two_theta_deg)) ** 2
    monochromated = (1.0 + cos2_2m * cos2_2t) / (1.0 + cos2_2m)
    return monochromated / ((1.0 + cos2_2t) / 2.0)


def automatic_slit_factor(two_theta: Any) -> Any:
    """Automatic over fixed divergence slit intensity: ``sin(theta)`` (relative).

    A fixed slit irradiates a length ``~ 1 / sin(theta)`` of an infinitely thick, wide sample
    whose diffracted intensity is then independent of theta; an automatic slit keeps the
    irradiated length constant, so it collects ``sin(theta)`` times as much (up to a constant).
    """
    lib = _lib(two_theta)
    return lib.sin(lib.deg2rad(two_theta) / 2.0)


def automatic_to_fixed_slit(intensity: Any, two_theta: Any) -> Any:
    """Converts intensities measured with an automatic slit to fixed-slit ones: ``I / sin(theta)``.

    Relative (the constant of irradiated length over slit opening is left out).
    """
    return intensity / automatic_slit_factor(two_theta)


def fixed_to_automatic_slit(intensity: Any, two_theta: Any) -> Any:
    """Fixed-slit intensities as an automatic slit records them: ``I sin(theta)`` (relative)."""
    return intensity * automatic_slit_factor(two_theta)


def pseudo_voigt_height_profile(x_deg: Any, fwhm_deg: Any, eta: Any) -> Any:
    """Pseudo-Voigt of height 1 at x = 0, FWHM F, degrees.

    ``eta / (1 + 4 x^2 / F^2) + (1 - eta) exp(-4 ln2 x^2 / F^2)``.
    """
    lib = _lib(x_deg)
    z2 = 4.0 * (x_deg / fwhm_deg) ** 2
    return eta / (1.0 + z2) + (1.0 - eta) * lib.exp(-math.log(2.0) * z2)


def chebyshev_grid_coordinate(two_theta: Any, two_theta_min: float, two_theta_max: float) -> Any:
    """Maps the grid to [-1, 1]: ``x = 2 (2theta - 2theta_min) / (2theta_max - 2theta_min) - 1``."""
    return 2.0 * (two_theta - two_theta_min) / (two_theta_max - two_theta_min) - 1.0


def chebyshev_basis(x: Any, order: int) -> Any:
    """Chebyshev polynomials ``T_0 .. T_order`` at x (first kind), shape ``(order + 1, *x.shape)``.

    ``T_0 = 1``, ``T_1 = x``, ``T_k = 2 x T_(k-1) - T_(k-2)`` (numpy.polynomial.chebyshev's).
    """
    lib = _lib(x)
    rows = [lib.ones_like(x), x]
    for _ in range(2, order + 1):
        rows.append(2.0 * x * rows[-1] - rows[-2])
    return lib.stack(rows[: order + 1])
