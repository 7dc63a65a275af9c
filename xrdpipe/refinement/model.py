r"""The calculated pattern of a mixture and its derivatives (the refinement's forward model).

    y_calc(2theta) = sum_k b_k T_k(x) + sum_p S_p sum_(hkl, line) I_(hkl,p,line)
                     pV(2theta - 2theta_obs; Gamma, eta)

with, per phase ``p``, reflection ``hkl`` and emission line ``j`` (K-alpha1, K-alpha2 of
share ``1 / (1 + ratio)`` and ``ratio / (1 + ratio)``):

1. ``d`` from ``hkl`` and the refined cell (:meth:`RefinementPhase.d_spacings`);
2. intensity ``I = |F|^2(d) m LP(2theta(lambda_ref, d)) P_MD(r) exp(-dB / 2d^2) share_j``
   (``dB``: the phase's overall B shift, angstrom^2, 0 unless refined), times the
   monochromator polarisation ratio and, for an automatic slit, ``sin(theta)``, both at the
   line's Bragg angle ``2theta_j = 2 asin(lambda_j / 2d)`` (as the engine,
   :mod:`xrdpipe.patterns.instrument`);
3. ``P_MD``: March-Dollase averaged over the reflection's family, ``mean_g (r^2 cos^2
   alpha_g + sin^2 alpha_g / r)^(-3/2)`` with ``cos alpha_g = h . (B^T Q_g^T a) / |B h|``
   (:mod:`xrdpipe.patterns.orientation`'s definition, with the unstrained ``B``);
4. widths at ``2theta_j``: Caglioti ``G^2 = U tan^2 theta + V tan theta + W``, Lorentzian
   ``L = X / cos theta + Y tan theta``, TCH ``Gamma`` and ``eta``
   (:mod:`xrdpipe.patterns.physics`);
5. position ``2theta_obs = 2theta_j + zero + delta_2theta(s)``, ``delta_2theta = -2 s
   cos(theta_j) / R``;
6. ``pV``: the unit-area pseudo-Voigt of the engine (``docs/patterns.md``), written as the
   physics module's height-1 profile times ``h = eta 2/(pi Gamma) + (1 - eta) c_G / Gamma``
   (``c_G = 2 sqrt(ln 2 / pi)``) with the mixing ``eta' = eta 2 / (pi Gamma h)``;
7. the low-angle asymmetry of axial divergence, Berar & Baldinozzi's (1993) correction with
   the axial term's angle dependence: ``pV`` times ``A(z) = 1 + a F_a(z) + b F_b(z)``,
   ``z = (2theta - 2theta_obs) / Gamma``, ``F_a = 2 z exp(-z^2)``, ``F_b = (8 z^3 - 12 z)
   exp(-z^2)`` (Hermite ``H_1``, ``H_3`` times a Gaussian: odd, so the line's area is
   kept), ``a = P_1 / tan(2theta_j)``, ``b = P_2 / tan(2theta_j)`` with two instrument
   parameters ``P_1, P_2`` (:func:`asymmetry_factor`; 0: the symmetric profile, computed
   as before).

Each line is evaluated on a window of ``WINDOW_FWHM`` FWHMs either side of its centre (the
Lorentzian area beyond is ``(2/pi) atan(1/(2 WINDOW_FWHM))`` of the line, 1.3 % at 25, a
smooth remainder the Chebyshev background absorbs). A phase's column and its derivatives
come from sparse products: the windows of ``pV`` and of ``dpV/d(2theta_obs)``,
``dpV/dGamma`` and ``dpV/deta`` (analytic, over ``DERIVATIVE_WINDOW_FWHM``; of ``pV A``
for asymmetric lines) as the columns of CSC matrices, times the per-line chain-rule
factors (``dI/dtheta``, ``I d2theta_obs/dtheta``, ``I dGamma/dtheta``, ``I deta/dtheta``:
analytic for the zero shift and the displacement, central differences of the per-line
scalars otherwise); ``P_1`` and ``P_2`` by the windows of ``pV F_a`` and ``pV F_b``
(:func:`asymmetry_windows`) times ``I / tan 2theta_j``. The change of a line's ``a, b``
with the cell (through ``tan 2theta_j``) is left out of the cell's derivatives: it is
``P d(cot 2theta)`` against the line's move of a FWHM fraction, below the Jacobian's
accuracy (Kaufman's approximation, 15-FWHM windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import sparse

from xrdpipe.patterns.config import CU_KA1, CU_KA2, KA2_KA1_RATIO, InstrumentConfig, ProfileConfig
from xrdpipe.patterns.physics import (
    automatic_slit_factor,
    bragg_two_theta_deg,
    caglioti_gaussian_fwhm_deg,
    chebyshev_basis,
    chebyshev_grid_coordinate,
    displacement_shift_deg,
    lorentzian_fwhm_deg,
    march_dollase_factor,
    monochromator_polarisation_ratio,
    tch_fwhm_eta,
)
from xrdpipe.refinement.phases import RefinementPhase, lorentz_polarisation

WINDOW_FWHM = 25.0
"""Half-width of a line's window in FWHMs (see the module docstring)."""

GAUSS_AREA = 2.0 * math.sqrt(math.log(2.0) / math.pi)
"""Height times FWHM of a unit-area Gaussian."""

LORENTZ_AREA = 2.0 / math.pi
"""Height times FWHM of a unit-area Lorentzian."""

LN2 = math.log(2.0)

GAUSS_CUT_FWHM = 4.0
"""FWHMs beyond which the Gaussian part is left out (``exp(-4 ln2 16) < 1e-19``)."""

DERIVATIVE_WINDOW_FWHM = 15.0
"""Half-width of the derivative windows, FWHMs: the derivatives' tails (``dpV/dGamma ~ u^-2``) hold
~2 % of their norm beyond (the Jacobian test's bound); they steer the fit and scale the
esds."""

WIDTH_NAMES = ("U", "V", "W", "X", "Y")
"""TCH widths: Caglioti U, V, W (deg^2) and Lorentzian X, Y (degrees)."""

ASYMMETRY_CUT_FWHM = GAUSS_CUT_FWHM
"""FWHMs beyond which ``A(z) = 1``: ``|F_b(4)| = 5e-5``, on a profile that is there below
1.5 % of its height (``pV`` within the Gaussian's cut, one mask for both)."""

DERIVATIVE_STEP = {"lattice": 1e-5, "width": 1e-6, "global": 1e-5, "ratio": 1e-5, "thermal": 1e-5}
"""Central-difference steps of the per-line scalars (relative for lattice values)."""


@dataclass(frozen=True)
class LineSettings:
    """The instrument as the model needs it (fixed, not refined).

    Attributes:
        ka1: K-alpha1 (or the only) wavelength, angstrom.
        ka2: K-alpha2 wavelength, angstrom; ``None``: a single line.
        ka2_ratio: I(K-alpha2) / I(K-alpha1).
        goniometer_radius_mm: R, mm.
        monochromator_two_theta_deg: 2theta_m of a diffracted-beam monochromator, or None.
        divergence_slit: ``fixed`` or ``automatic`` (intensities times ``sin(theta)``).
    """

    ka1: float = CU_KA1
    ka2: float | None = CU_KA2
    ka2_ratio: float = KA2_KA1_RATIO
    goniometer_radius_mm: float = 240.0
    monochromator_two_theta_deg: float | None = None
    divergence_slit: Literal["fixed", "automatic"] = "fixed"

    @classmethod
    def from_profile(cls, profile: ProfileConfig) -> LineSettings:
        """The lines and the instrument's fixed geometry of an engine configuration."""
        inst = profile.instrument or InstrumentConfig()
        return cls(
            ka1=profile.ka1,
            ka2=profile.ka2 if profile.ka_doublet else None,
            ka2_ratio=profile.ka2_ratio,
            goniometer_radius_mm=inst.goniometer_radius_mm,
            monochromator_two_theta_deg=inst.monochromator_two_theta_deg,
            divergence_slit=inst.divergence_slit,
        )

    @property
    def lines(self) -> tuple[tuple[float, float], ...]:
        """``(wavelength, share)`` of each emission line; shares sum to 1."""
        if self.ka2 is None or self.ka2_ratio == 0:
            return ((self.ka1, 1.0),)
        total = 1.0 + self.ka2_ratio
        return ((self.ka1, 1.0 / total), (self.ka2, self.ka2_ratio / total))


@dataclass(frozen=True)
class PhaseParameters:
    """One phase's nonlinear parameters, as values (not indices).

    Attributes:
        lattice: the free lattice values (:class:`~xrdpipe.refinement.phases.LatticeModel`).
        widths: ``(U, V, W, X, Y)``.
        march_dollase_ratio: r (1: random powder).
        b_shift: the overall B shift ``dB``, angstrom^2, added to every site's B (0: the
            phase's own B).
    """

    lattice: np.ndarray
    widths: np.ndarray
    march_dollase_ratio: float = 1.0
    b_shift: float = 0.0


@dataclass(frozen=True)
class Lines:
    """Per-line scalars of one phase.

    Centre, FWHM, eta, integrated intensity, Bragg angle, and the asymmetry coefficients
    ``a``, ``b`` of :func:`asymmetry_factor`.
    """

    position: np.ndarray
    fwhm: np.ndarray
    eta: np.ndarray
    intensity: np.ndarray
    bragg: np.ndarray
    asymmetry_a: np.ndarray
    asymmetry_b: np.ndarray

    @property
    def asymmetric(self) -> bool:
        """Whether any line has an asymmetry (else the symmetric profile is used)."""
        return bool(np.any(self.asymmetry_a) or np.any(self.asymmetry_b))


def line_widths(bragg: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TCH FWHM and eta at the Bragg angles for ``U, V, W, X, Y`` (module docstring, 4)."""
    u, v, w, x, y = widths
    gauss = caglioti_gaussian_fwhm_deg(bragg, u, v, w)
    return tch_fwhm_eta(gauss, lorentzian_fwhm_deg(bragg, x, y))


def asymmetry_angle_factor(bragg: np.ndarray) -> np.ndarray:
    """``1 / tan(2theta)`` at the Bragg angles (degrees): the axial-divergence dependence.

    The axial divergence's shift and its low-angle tail both scale as ``cot 2theta``
    (Cheary & Coelho 1998; the ``P_3, P_4`` term of Berar & Baldinozzi 1993), and the tail
    turns to high angles above 90 degrees.
    """
    return 1.0 / np.tan(np.radians(bragg))


def hermite_asymmetry(
    z: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``F_a(z) = 2 z e^(-z^2)``, ``F_b(z) = (8 z^3 - 12 z) e^(-z^2)`` and their z-derivatives.

    ``F_a' = (2 - 4 z^2) e^(-z^2)``, ``F_b' = (-16 z^4 + 48 z^2 - 12) e^(-z^2)``.
    """
    z2 = z * z
    gauss = np.exp(-z2)
    return (
        2.0 * z * gauss,
        (8.0 * z2 - 12.0) * z * gauss,
        (2.0 - 4.0 * z2) * gauss,
        ((-16.0 * z2 + 48.0) * z2 - 12.0) * gauss,
    )


def asymmetry_factor(
    offset: np.ndarray, fwhm: np.ndarray, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """``A(z) = 1 + a F_a(z) + b F_b(z)``, ``z = offset / fwhm`` (module docstring, step 7).

    Both terms are odd in ``z``, so the product with the symmetric ``pV`` keeps the line's
    area; ``a < 0`` raises the low-angle side (``z < 0``). Computed within
    :data:`ASYMMETRY_CUT_FWHM` FWHMs, 1 beyond.
    """
    z = offset / fwhm
    out = np.ones_like(z)
    near = np.abs(z) < ASYMMETRY_CUT_FWHM
    fa, fb, _, _ = hermite_asymmetry(z[near])
    out[near] += np.broadcast_to(a, z.shape)[near] * fa + np.broadcast_to(b, z.shape)[near] * fb
    return out


def march_dollase_family(phase: RefinementPhase, axis_hkl: np.ndarray, ratio: float) -> np.ndarray:
    """March-Dollase factor of each peak, the mean over its family (module docstring, 3)."""
    if ratio == 1.0:
        return np.ones(len(phase.hkl))
    basis = phase.reciprocal_basis
    axis = basis @ np.asarray(axis_hkl, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    h = phase.hkl.astype(np.float64)
    norms = np.linalg.norm(h @ basis.T, axis=1)
    # (G, 3): B^T Q_g^T a for each rotation g
    projections = np.einsum("ji,gkj,k->gi", basis, phase.rotations, axis)
    cos_alpha = (h @ projections.T) / norms[:, None]
    return march_dollase_factor(cos_alpha, ratio).mean(axis=1)


def phase_lines(
    phase: RefinementPhase,
    params: PhaseParameters,
    zero_shift_deg: float,
    displacement_mm: float,
    settings: LineSettings,
    axis_hkl: np.ndarray | None = None,
    asymmetry: tuple[float, float] = (0.0, 0.0),
) -> Lines:
    """Every emission line of every peak of a phase (module docstring, steps 1-5, 7).

    ``asymmetry``: ``(P_1, P_2)``; each line's ``a, b`` are these over ``tan(2theta_j)``.
    """
    d = phase.d_spacings(params.lattice)
    base = phase.structure_intensities(d) * lorentz_polarisation(
        bragg_two_theta_deg(d, phase.reference_wavelength)
    )
    if axis_hkl is not None and params.march_dollase_ratio != 1.0:
        base = base * march_dollase_family(phase, axis_hkl, params.march_dollase_ratio)
    if params.b_shift != 0.0:  # Debye-Waller: exp(-2 dB s^2), s = 1 / 2d
        base = base * np.exp(-params.b_shift / (2.0 * d**2))
    positions, fwhms, etas, intensities, braggs = [], [], [], [], []
    for wavelength, share in settings.lines:
        bragg = bragg_two_theta_deg(d, wavelength)  # NaN where lambda > 2d
        ok = np.isfinite(bragg)
        bragg = np.where(ok, bragg, 179.0)
        intensity = np.where(ok, base * share, 0.0)
        if settings.monochromator_two_theta_deg is not None:
            intensity = intensity * monochromator_polarisation_ratio(
                bragg, settings.monochromator_two_theta_deg
            )
        if settings.divergence_slit == "automatic":
            intensity = intensity * automatic_slit_factor(bragg)
        fwhm, eta = line_widths(bragg, params.widths)
        shift = zero_shift_deg + displacement_shift_deg(
            bragg, displacement_mm, settings.goniometer_radius_mm
        )
        positions.append(bragg + shift)
        fwhms.append(fwhm)
        etas.append(eta)
        intensities.append(intensity)
        braggs.append(bragg)
    bragg_all = np.concatenate(braggs)
    angle = asymmetry_angle_factor(bragg_all) if any(asymmetry) else np.zeros_like(bragg_all)
    return Lines(
        *(np.concatenate(v) for v in (positions, fwhms, etas, intensities)),
        bragg=bragg_all,
        asymmetry_a=asymmetry[0] * angle,
        asymmetry_b=asymmetry[1] * angle,
    )


def pseudo_voigt_area(
    offset: np.ndarray,
    fwhm: np.ndarray,
    eta: np.ndarray,
    asymmetry: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The engine's unit-area pseudo-Voigt (module docstring, step 6), per degree.

    Equal to ``h * pseudo_voigt_height_profile(offset, fwhm, eta')`` (the physics module's
    shape); evaluated as ``eta L + (1 - eta) G`` with the Gaussian only within
    :data:`GAUSS_CUT_FWHM` FWHMs (beyond, ``G < 1e-17`` of its height): the far windows
    cost a division each, not an exponential. With ``asymmetry = (a, b)`` (per point), times
    :func:`asymmetry_factor` within the same FWHMs (step 7).
    """
    z2 = 4.0 * offset * offset / (fwhm * fwhm)
    value = eta * (LORENTZ_AREA / fwhm) / (1.0 + z2)
    near = z2 < 4.0 * GAUSS_CUT_FWHM * GAUSS_CUT_FWHM
    fwhm_near = np.broadcast_to(fwhm, z2.shape)[near]
    eta_near = np.broadcast_to(eta, z2.shape)[near]
    value[near] += (1.0 - eta_near) * (GAUSS_AREA / fwhm_near) * np.exp(-LN2 * z2[near])
    if asymmetry is not None:
        a, b = (np.broadcast_to(c, z2.shape)[near] for c in asymmetry)
        value[near] *= asymmetry_factor(offset[near], fwhm_near, a, b)
    return value


def pseudo_voigt_derivatives(
    offset: np.ndarray, fwhm: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dpV/d(2theta_obs)``, ``dpV/dGamma`` and ``dpV/deta`` of the unit-area pseudo-Voigt.

    With ``z^2 = 4 u^2 / Gamma^2``, ``L = (2 / pi Gamma) / (1 + z^2)``, ``G = (c_G / Gamma)
    exp(-ln2 z^2)``: ``dL/dcentre = L (8 u / Gamma^2) / (1 + z^2)``, ``dG/dcentre = G 8 ln2
    u / Gamma^2``, ``dL/dGamma = L (-1 + 2 z^2 / (1 + z^2)) / Gamma``, ``dG/dGamma = G (-1 +
    2 ln2 z^2) / Gamma``, ``dpV/deta = L - G``.
    """
    z2 = 4.0 * offset * offset / (fwhm * fwhm)
    lor = (LORENTZ_AREA / fwhm) / (1.0 + z2)
    gauss = (GAUSS_AREA / fwhm) * np.exp(-LN2 * z2)
    d_centre = (eta * lor / (1.0 + z2) + (1.0 - eta) * LN2 * gauss) * (8.0 * offset / (fwhm * fwhm))
    d_fwhm = (
        eta * lor * (-1.0 + 2.0 * z2 / (1.0 + z2)) + (1.0 - eta) * gauss * (-1.0 + 2.0 * LN2 * z2)
    ) / fwhm
    return d_centre, d_fwhm, lor - gauss


def asymmetric_pseudo_voigt_derivatives(
    offset: np.ndarray, fwhm: np.ndarray, eta: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Derivatives of ``pV A(z)``: centre, FWHM, eta, ``a`` and ``b``.

    With ``z = u / Gamma`` (``u = 2theta - 2theta_obs``), ``dz/dcentre = -1 / Gamma`` and
    ``dz/dGamma = -z / Gamma``: ``d/dcentre = dpV/dcentre A - pV A'(z) / Gamma``,
    ``d/dGamma = dpV/dGamma A - pV A'(z) z / Gamma``, ``d/deta = (L - G) A``,
    ``d/da = pV F_a``, ``d/db = pV F_b`` (``A' = a F_a' + b F_b'``).
    """
    value = pseudo_voigt_area(offset, fwhm, eta)
    d_centre, d_fwhm, d_eta = pseudo_voigt_derivatives(offset, fwhm, eta)
    z = offset / fwhm
    fa, fb, dfa, dfb = hermite_asymmetry(z)
    factor = 1.0 + a * fa + b * fb
    slope = (a * dfa + b * dfb) * value / fwhm
    return (
        d_centre * factor - slope,
        d_fwhm * factor - slope * z,
        d_eta * factor,
        value * fa,
        value * fb,
    )


def unit_area_pseudo_voigt(
    offset: np.ndarray, fwhm: np.ndarray, eta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The unit-area pseudo-Voigt and its derivatives (centre, FWHM, eta)."""
    return (pseudo_voigt_area(offset, fwhm, eta), *pseudo_voigt_derivatives(offset, fwhm, eta))


def _windows(
    two_theta: np.ndarray, lines: Lines, half_width_fwhm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, owning line and CSC column pointers of each line's window."""
    n = len(two_theta)
    step = float(np.median(np.diff(two_theta)))
    half = np.minimum(np.ceil(half_width_fwhm * lines.fwhm / step).astype(np.int64) + 1, n)
    centre = np.searchsorted(two_theta, lines.position)
    start = np.clip(centre - half, 0, n)
    length = np.maximum(np.clip(centre + half + 1, 0, n) - start, 0)
    length[lines.intensity == 0] = 0
    indptr = np.concatenate([[0], np.cumsum(length)])
    owner = np.repeat(np.arange(len(length)), length)
    rows = np.arange(indptr[-1]) + np.repeat(start - indptr[:-1], length)
    return rows, owner, indptr


def line_windows(
    two_theta: np.ndarray, lines: Lines, derivatives: bool = True
) -> tuple[sparse.csc_matrix, sparse.csc_matrix | None]:
    """The lines' windows on the grid: ``pV A`` and (optionally) its derivatives, CSC.

    Returns:
        ``(n_points, n_lines)`` ``pV A`` over :data:`WINDOW_FWHM` FWHMs either side, and
        ``(n_points, 3 n_lines)`` ``[d/dcentre | d/dGamma | d/deta]`` over
        :data:`DERIVATIVE_WINDOW_FWHM` (None without ``derivatives``). ``A = 1`` unless
        ``lines.asymmetric``.
    """
    n, n_lines = len(two_theta), len(lines.position)
    rows, owner, indptr = _windows(two_theta, lines, WINDOW_FWHM)
    offset = two_theta[rows] - lines.position[owner]
    asymmetry = (lines.asymmetry_a[owner], lines.asymmetry_b[owner]) if lines.asymmetric else None
    value = pseudo_voigt_area(offset, lines.fwhm[owner], lines.eta[owner], asymmetry)
    values = sparse.csc_matrix((value, rows, indptr), shape=(n, n_lines))
    if not derivatives:
        return values, None
    rows, owner, indptr = _windows(two_theta, lines, DERIVATIVE_WINDOW_FWHM)
    offset = two_theta[rows] - lines.position[owner]
    fwhm, eta = lines.fwhm[owner], lines.eta[owner]
    blocks = pseudo_voigt_derivatives(offset, fwhm, eta)
    if lines.asymmetric:  # A = 1 beyond ASYMMETRY_CUT_FWHM: the symmetric derivatives there
        near = np.abs(offset) < ASYMMETRY_CUT_FWHM * fwhm
        a, b = lines.asymmetry_a[owner][near], lines.asymmetry_b[owner][near]
        exact = asymmetric_pseudo_voigt_derivatives(offset[near], fwhm[near], eta[near], a, b)
        for block, value_near in zip(blocks, exact[:3], strict=True):
            block[near] = value_near
    total = int(indptr[-1])
    pointers = np.concatenate([indptr[:-1] + k * total for k in range(3)] + [[3 * total]])
    derivative = sparse.csc_matrix(
        (np.concatenate(blocks), np.tile(rows, 3), pointers), shape=(n, 3 * n_lines)
    )
    return values, derivative


def asymmetry_windows(
    two_theta: np.ndarray, lines: Lines
) -> tuple[sparse.csc_matrix, sparse.csc_matrix]:
    """``d(pV A)/da = pV F_a`` and ``d(pV A)/db = pV F_b`` of each line, ``(n_points, n_lines)``.

    Over :data:`ASYMMETRY_CUT_FWHM` FWHMs either side (``F_a``, ``F_b`` vanish beyond).
    """
    n, n_lines = len(two_theta), len(lines.position)
    rows, owner, indptr = _windows(two_theta, lines, ASYMMETRY_CUT_FWHM)
    offset = two_theta[rows] - lines.position[owner]
    fwhm = lines.fwhm[owner]
    value = pseudo_voigt_area(offset, fwhm, lines.eta[owner])
    fa, fb, _, _ = hermite_asymmetry(offset / fwhm)
    return tuple(  # type: ignore[return-value]
        sparse.csc_matrix((value * f, rows, indptr), shape=(n, n_lines)) for f in (fa, fb)
    )


def background_basis(two_theta: np.ndarray, order: int) -> np.ndarray:
    """Chebyshev columns ``T_0 .. T_order`` on the scan's range, ``(n_points, order + 1)``."""
    if not 0 <= order <= 6:
        raise ValueError(f"background order {order!r} must be in 0..6")
    x = chebyshev_grid_coordinate(two_theta, float(two_theta[0]), float(two_theta[-1]))
    return np.asarray(chebyshev_basis(x, order)).T
