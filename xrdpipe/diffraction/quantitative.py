r"""Quantitative phase analysis physics: Hill-Howard weight fractions, absorption, Brindley.

Pure numpy functions (``xraydb`` for the attenuation tables); arrays broadcast over leading
axes, the last axis is the phase. Units: density g/cm^3, cell volume angstrom^3, formula
mass g/mol, linear absorption coefficient ``mu`` 1/cm, particle radius micrometre.

**Hill-Howard** (Hill & Howard 1987): a phase's Rietveld scale ``S`` (``I = S m LP |F|^2``
per cell) is ``S_i = K w_i / (rho_i V_i^2 mu*)``, so with ``rho_i V_i = Z_i M_i / N_A``

    w_i = S_i Z_i M_i V_i / sum_j S_j Z_j M_j V_j.

The project's ``fraction_mode: weight`` (``patterns.mixtures.mixture_intensities``) scales
each phase's ``intensity_raw`` (``|F|^2 m LP`` per cell) by ``w / (rho V^2)``: that *is*
``S`` up to the common ``K / mu*`` (:func:`weight_mode_scale`), so Hill-Howard on those
scales gives ``w`` back.

**Brindley** (1945) microabsorption: a particle of phase ``i`` (radius ``R``) in a powder of
mean linear absorption ``mu_bar`` diffracts ``tau_i`` times as much as the homogeneous model
says, with the particle absorption factor

    tau(a) = (1 / V) \int_V exp(-a x / R) dV,     a = (mu_i - mu_bar) R,

``x`` the path inside the particle of the ray diffracted at ``dV`` (entry to ``dV`` along the
incident beam plus ``dV`` to the exit along the diffracted beam, at ``two_theta``). It is
integrated over the sphere numerically (:func:`particle_absorption_factor`). ``mu_bar`` is
the volume-fraction mean of the solid phases; fractions from scales then depend on ``tau``
and ``tau`` on the fractions, so :func:`hill_howard_weight_fractions` iterates the two.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
from pymatgen.core import Composition

from xrdpipe.diffraction.scattering import photon_energy_ev

AVOGADRO = 6.02214076e23
"""1/mol (SI 2019)."""

ANGSTROM3_PER_CM3 = 1e24

MICROMETRE_PER_CM = 1e4

BRINDLEY_LIMIT = 0.5
"""|(mu_i - mu_bar) R| above which Brindley's model is unreliable: a warning is issued."""

TAU_NODES = 32
"""Gauss-Legendre nodes in r and cos(polar) (twice as many azimuths): tau to ~1e-6."""


TAU_CHUNK = 1 << 22
"""Exponentials evaluated at once by :func:`particle_absorption_factor` (32 MiB of float64)."""


class MicroabsorptionWarning(UserWarning):
    """A phase's |(mu_i - mu_bar) R| exceeds :data:`BRINDLEY_LIMIT`."""


def cell_mass(density: np.ndarray | float, volume: np.ndarray | float) -> np.ndarray:
    """``Z M`` of a cell (g/mol) from its density (g/cm^3) and volume (angstrom^3).

    ``rho = Z M / (N_A V)``, so ``Z M = rho V N_A`` (V in cm^3).
    """
    return np.asarray(density) * np.asarray(volume) / ANGSTROM3_PER_CM3 * AVOGADRO


def weight_mode_scale(
    weight_fraction: np.ndarray, density: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    """The project's weight-mode scale ``w / (rho V^2)`` (Rietveld ``S`` up to a constant).

    Args:
        weight_fraction: ``(..., K)``.
        density: ``(..., K)`` g/cm^3.
        volume: ``(..., K)`` angstrom^3.

    Returns:
        ``(..., K)`` scales that multiply ``intensity_raw``.
    """
    return np.asarray(weight_fraction) / (np.asarray(density) * np.asarray(volume) ** 2)


def _normalised(x: np.ndarray) -> np.ndarray:
    total = x.sum(axis=-1, keepdims=True)
    if np.any(total <= 0) or not np.all(np.isfinite(x)):
        raise ValueError(f"weights {x} must be finite, >= 0, with a positive sum per mixture")
    return x / total


def mass_attenuation_coefficient(element: str, energy_ev: float) -> float:
    """Total mass attenuation coefficient ``mu/rho`` of an element, cm^2/g (``xraydb``).

    Elam's tables (``xraydb.mu_elam``, kind ``total``: photo-absorption plus coherent and
    incoherent scattering).
    """
    import xraydb  # noqa: PLC0415 - a database load, only when absorption is asked for

    return float(xraydb.mu_elam(element, energy_ev, kind="total"))


def mass_attenuation(
    composition: Composition | str | Mapping[str, float], wavelength: float
) -> float:
    """Mass attenuation coefficient ``mu/rho = sum_e w_e (mu/rho)_e`` of a phase, cm^2/g.

    It depends on the composition only (``w_e``: element mass fractions), so a reduced
    formula is enough; the linear coefficient is this times the density.

    Args:
        composition: a pymatgen ``Composition``, a formula such as ``"Bi2O3"`` or
            ``{element: amount}``.
        wavelength: angstrom.
    """
    comp = composition if isinstance(composition, Composition) else Composition(composition)
    energy = photon_energy_ev(wavelength)
    return float(
        sum(
            comp.get_wt_fraction(el) * mass_attenuation_coefficient(el.symbol, energy)
            for el in comp.elements
        )
    )


def linear_absorption_coefficient(
    composition: Composition | str | Mapping[str, float],
    density: float,
    wavelength: float,
) -> float:
    """Linear absorption coefficient ``mu = rho sum_e w_e (mu/rho)_e`` of a phase, 1/cm.

    Args:
        composition: the phase's composition (a pymatgen ``Composition``, a formula such as
            ``"Bi2O3"`` or ``{element: amount}``); ``w_e`` are its element mass fractions.
        density: g/cm^3.
        wavelength: angstrom.

    Returns:
        ``mu`` in 1/cm.
    """
    if not density > 0:
        raise ValueError(f"density={density!r} must be positive (g/cm^3)")
    return float(density * mass_attenuation(composition, wavelength))


@cache
def _tau_nodes(two_theta: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Path lengths ``x / R`` and weights (sum 1) of a product Gauss rule on the sphere.

    Points ``p`` in spherical coordinates: Gauss-Legendre in ``r`` (weight ``3 r^2``) and in
    ``cos(polar)``, the midpoint rule in azimuth over ``[0, pi]`` (the integrand is even in
    the azimuth). The beam back to the source is ``u_in = z``; the diffracted beam
    ``u_out = (sin 2theta, 0, -cos 2theta)``; the distance from ``p`` to the surface along
    ``u`` is ``-p.u + sqrt((p.u)^2 + 1 - |p|^2)``.
    """
    r, wr = np.polynomial.legendre.leggauss(n)
    r = (r + 1) / 2
    wr = wr / 2 * 3 * r**2
    cos_p, wc = np.polynomial.legendre.leggauss(n)
    wc = wc / 2
    n_phi = 2 * n
    phi = (np.arange(n_phi) + 0.5) * math.pi / n_phi
    rr, cc, pp = np.meshgrid(r, cos_p, phi, indexing="ij")
    weights = (wr[:, None, None] * wc[None, :, None] / n_phi).repeat(n_phi, axis=2).ravel()
    sin_p = np.sqrt(1 - cc**2)
    points = np.stack([rr * sin_p * np.cos(pp), rr * sin_p * np.sin(pp), rr * cc], -1)
    points = points.reshape(-1, 3)
    inside = 1 - np.einsum("ij,ij->i", points, points)
    tt = math.radians(two_theta)
    path = np.zeros(len(points))
    for u in (np.array([0.0, 0.0, 1.0]), np.array([math.sin(tt), 0.0, -math.cos(tt)])):
        pu = points @ u
        path += -pu + np.sqrt(np.maximum(pu * pu + inside, 0.0))
    return path, weights


def particle_absorption_factor(
    delta_mu_r: np.ndarray | float, two_theta: float = 90.0, n: int = TAU_NODES
) -> np.ndarray:
    """Brindley's particle absorption factor ``tau(a)`` of a sphere, ``a = (mu_i - mu_bar) R``.

    ``tau(a) = (1/V) int_V exp(-a x / R) dV`` by a product Gauss rule (:func:`_tau_nodes`);
    ``tau(0) = 1``, ``tau ~ 1 - 1.5 a`` for small ``a`` (the mean path is ``1.5 R`` at any
    angle). The angle enters at second order: at ``a = 0.5``, 0.482 at ``2theta -> 0``,
    0.502 at 90 degrees, 0.527 at 180 degrees.

    Args:
        delta_mu_r: ``(mu_i - mu_bar) R``, dimensionless, any shape.
        two_theta: the diffraction angle, degrees in [0, 180].
        n: quadrature nodes per radial and polar axis.

    Returns:
        ``tau``, the shape of ``delta_mu_r``.
    """
    if not 0 <= two_theta <= 180:
        raise ValueError(f"two_theta={two_theta!r} must be in [0, 180] degrees")
    a = np.asarray(delta_mu_r, dtype=np.float64)
    path, weights = _tau_nodes(float(two_theta), int(n))
    flat = a.ravel()
    tau = np.empty_like(flat)
    step = max(1, TAU_CHUNK // len(path))  # bounded memory: ~TAU_CHUNK exponentials at once
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step]
        tau[start : start + step] = np.exp(-chunk[:, None] * path) @ weights
    return tau.reshape(a.shape)


def particle_absorption_grid(
    two_theta: float = 90.0, a_max: float = 1.0, n_points: int = 2001
) -> tuple[np.ndarray, np.ndarray]:
    """``tau`` on an even grid of ``a`` in ``[-a_max, a_max]``, for interpolation in a loop.

    The quadrature costs ~65,000 exponentials per value; a renderer that needs ``tau`` for
    every (mixture, phase) interpolates this grid instead (linear interpolation on the
    default grid, spacing 0.001, is good to 1e-6 relative on ``|a| <= 1``; at spacing 0.005,
    to ~1e-5). Computed once per argument set (cached; the arrays are read-only).

    Args:
        two_theta: degrees.
        a_max: the grid's half-width (``|a|`` beyond 0.5 already warns).
        n_points: grid points.

    Returns:
        ``(a, tau)``, each ``(n_points,)``.
    """
    if not a_max > 0 or n_points < 2:
        raise ValueError(f"a_max={a_max!r} must be > 0 and n_points={n_points!r} >= 2")
    return _grid(float(two_theta), float(a_max), int(n_points))


@cache
def _grid(two_theta: float, a_max: float, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(-a_max, a_max, n_points)
    tau = particle_absorption_factor(a, two_theta)
    a.flags.writeable = False
    tau.flags.writeable = False
    return a, tau


def pool_microabsorption(
    names: list[str], linear_absorption: np.ndarray, particle_radius: float
) -> list[tuple[str, str, float]]:
    """Phases of a pool whose ``|mu_i - mu_bar| R`` can exceed :data:`BRINDLEY_LIMIT`.

    In a mixture of phases ``i`` and ``j``, ``mu_bar`` lies between ``mu_i`` and ``mu_j``
    and tends to ``mu_j`` as ``i`` becomes a trace, so the largest ``|a_i|`` phase ``i`` can
    reach in any mixture of the pool is ``max_j |mu_i - mu_j| R``.

    Args:
        names: the ``M`` phases' names.
        linear_absorption: ``(M,)`` or ``(M, S)`` ``mu``, 1/cm (per strain: the extremes
            count).
        particle_radius: micrometre (the largest radius drawn).

    Returns:
        ``(phase, most different phase, max |a|)`` for each phase above the limit, worst
        first.
    """
    mu = np.asarray(linear_absorption, dtype=np.float64).reshape(len(names), -1)
    lo, hi = mu.min(axis=1), mu.max(axis=1)
    spread = np.maximum(hi[:, None] - lo[None, :], hi[None, :] - lo[:, None])
    reach = spread * (particle_radius / MICROMETRE_PER_CM)
    partner = reach.argmax(axis=1)
    worst = reach[np.arange(len(names)), partner]
    flagged = [
        (names[i], names[int(partner[i])], float(worst[i]))
        for i in np.argsort(-worst, kind="stable")
        if worst[i] > BRINDLEY_LIMIT
    ]
    return flagged


def brindley_argument(
    weight_fraction: Any, linear_absorption: Any, density: Any, particle_radius: Any
) -> Any:
    """Brindley's ``a_i = (mu_i - mu_bar) R`` of each phase of a mixture (the one home).

    ``mu_bar = sum_i v_i mu_i``, the mean over the solid of the volume fractions
    ``v_i = (w_i / rho_i) / sum_j (w_j / rho_j)``. Written with operators that numpy arrays
    and torch tensors share, so the renderer (:mod:`xrdpipe.patterns.microabsorption`, torch,
    on the batch's device) and the refinement (numpy) use this same expression.

    Args:
        weight_fraction: ``(..., K)`` (absent phases 0; any positive total).
        linear_absorption: ``(..., K)`` ``mu``, 1/cm.
        density: ``(..., K)`` g/cm^3.
        particle_radius: micrometre: a number, or ``(..., 1)`` (one radius per mixture).

    Returns:
        ``(..., K)`` ``a``, dimensionless.
    """
    volume = weight_fraction / density
    mu_bar = (volume * linear_absorption).sum(-1)[..., None] / volume.sum(-1)[..., None]
    return (linear_absorption - mu_bar) * (particle_radius / MICROMETRE_PER_CM)


def brindley_factors(
    weight_fraction: np.ndarray,
    linear_absorption: np.ndarray,
    density: np.ndarray,
    particle_radius: float,
    two_theta: float = 90.0,
) -> np.ndarray:
    """``tau_i`` of each phase of a mixture of known weight fractions.

    ``mu_bar = sum_i v_i mu_i`` with the volume fractions ``v_i = (w_i / rho_i) /
    sum_j (w_j / rho_j)``; ``tau_i = tau((mu_i - mu_bar) R)``. A phase's diffracted
    intensity is ``tau_i`` times the homogeneous one (weight mode: scale ``w tau / (rho V^2)``).
    Warns (:class:`MicroabsorptionWarning`) when any present phase has
    ``|mu_i - mu_bar| R > 0.5``.

    Args:
        weight_fraction: ``(..., K)`` (absent phases 0).
        linear_absorption: ``(..., K)`` ``mu``, 1/cm.
        density: ``(..., K)`` g/cm^3.
        particle_radius: micrometre (> 0).
        two_theta: degrees, the angle of :func:`particle_absorption_factor`.

    Returns:
        ``(..., K)`` ``tau``.
    """
    if not particle_radius > 0:
        raise ValueError(f"particle_radius={particle_radius!r} must be positive (micrometre)")
    w = _normalised(np.asarray(weight_fraction, dtype=np.float64))
    mu = np.asarray(linear_absorption, dtype=np.float64)
    a = brindley_argument(w, mu, np.asarray(density, dtype=np.float64), particle_radius)
    worst = float(np.abs(np.where(w > 0, a, 0.0)).max(initial=0.0))
    if worst > BRINDLEY_LIMIT:
        warnings.warn(
            f"|mu_i - mu_bar| R = {worst:.3g} exceeds {BRINDLEY_LIMIT}: Brindley's correction "
            "is unreliable there (grind finer, or expect biased weight fractions)",
            MicroabsorptionWarning,
            stacklevel=2,
        )
    return particle_absorption_factor(a, two_theta)


def hill_howard_weight_fractions(
    scale: np.ndarray,
    z: np.ndarray,
    formula_mass: np.ndarray,
    volume: np.ndarray,
    *,
    linear_absorption: np.ndarray | None = None,
    density: np.ndarray | None = None,
    particle_radius: float | None = None,
    two_theta: float = 90.0,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> np.ndarray:
    """Weight fractions from Rietveld scales: ``w_i ~ S_i Z_i M_i V_i / tau_i``.

    Without ``particle_radius`` ``tau = 1`` (plain Hill-Howard). With it, Brindley's
    ``tau_i`` depends on ``mu_bar``, hence on ``w``: start from plain Hill-Howard and iterate
    ``w -> normalise(S Z M V / tau(w))`` until no fraction moves by more than ``tol``.

    Args:
        scale: ``(..., K)`` scales ``S`` (relative; any common factor cancels).
        z: ``(..., K)`` formula units per cell.
        formula_mass: ``(..., K)`` g/mol per formula unit.
        volume: ``(..., K)`` cell volume, angstrom^3.
        linear_absorption: ``(..., K)`` ``mu``, 1/cm (with ``particle_radius``).
        density: ``(..., K)`` g/cm^3 (with ``particle_radius``).
        particle_radius: micrometre, or None for no microabsorption correction.
        two_theta: degrees, for ``tau``.
        tol: convergence tolerance on the fractions.
        max_iter: most iterations before giving up.

    Returns:
        ``(..., K)`` weight fractions, summing to 1.

    Raises:
        ValueError: missing ``linear_absorption``/``density`` with a radius, bad values,
            or no convergence within ``max_iter``.
    """
    zmv = np.asarray(scale) * np.asarray(z) * np.asarray(formula_mass) * np.asarray(volume)
    w = _normalised(np.asarray(zmv, dtype=np.float64))
    if particle_radius is None:
        return w
    if linear_absorption is None or density is None:
        raise ValueError("particle_radius needs linear_absorption (1/cm) and density (g/cm^3)")
    for _ in range(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MicroabsorptionWarning)  # once, at the end
            tau = brindley_factors(w, linear_absorption, density, particle_radius, two_theta)
        new = _normalised(zmv / tau)
        done = float(np.abs(new - w).max()) <= tol
        w = new
        if done:
            brindley_factors(w, linear_absorption, density, particle_radius, two_theta)
            return w
    raise ValueError(f"Brindley iteration did not converge in max_iter={max_iter} steps")
