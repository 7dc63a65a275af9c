r"""From a solved problem to its result: covariance, esds, Hill-Howard weight fractions.

``cov = (J^T J)^+ chi^2 c`` over the scales, the background and the free nonlinear
parameters (:func:`full_covariance`), with ``c`` the serial-correlation factor of the
residuals (:func:`serial_correlation_factor`, Berar & Lelann 1991): least-squares esds
assume independent residuals, but a profile misfit leaves residuals that run in the same
sign over a whole line (tens of points), and then the esds are too small by ``sqrt(c)``
(``docs/refinement.md`` quotes the values met); weight fractions and their esds by
:func:`weight_fractions`;
:func:`refinement_result` assembles the :class:`~xrdpipe.refinement.results.RefinementResult`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Composition

from xrdpipe.diffraction import brindley_factors, hill_howard_weight_fractions
from xrdpipe.diffraction.quantitative import linear_absorption_coefficient
from xrdpipe.refinement.model import WIDTH_NAMES, LineSettings
from xrdpipe.refinement.parameters import ParameterLayout, RefinementOptions
from xrdpipe.refinement.phases import RefinementPhase, cell_volume
from xrdpipe.refinement.problem import Evaluation, Problem
from xrdpipe.refinement.results import PhaseResult, RefinementResult

MAX_LAG_ONE_CORRELATION = 0.95
"""Upper limit of the lag-one correlation used (the factor stays below 39)."""


def serial_correlation_factor(residual: np.ndarray) -> float:
    r"""``c = (1 + rho) / (1 - rho)`` with ``rho`` the residuals' lag-one autocorrelation.

    The variance of a mean of a first-order autoregressive series is ``c`` times that of
    independent values; ``rho = 1 - d / 2`` with ``d`` the Durbin-Watson statistic, the
    form of Berar & Lelann's correction used by Rietveld programs. Residuals that are
    independent (or anticorrelated) give ``c = 1``; ``rho`` is capped at
    :data:`MAX_LAG_ONE_CORRELATION`.
    """
    r = np.asarray(residual, dtype=np.float64)
    r = r - r.mean()
    variance = float(r @ r)
    if variance <= 0 or len(r) < 3:
        return 1.0
    rho = min(max(float(r[:-1] @ r[1:]) / variance, 0.0), MAX_LAG_ONE_CORRELATION)
    return (1.0 + rho) / (1.0 - rho)


def full_covariance(problem: Problem, evaluation: Evaluation) -> tuple[np.ndarray, float, int]:
    """``(J^T J)^+ chi^2 c`` over [scales, background, free nonlinear]; chi^2; parameters.

    ``c``: :func:`serial_correlation_factor` of the residuals.
    """
    layout = problem.layout
    w = problem.weights[:, None]
    derivative = problem.model_derivative(evaluation)[:, layout.free] * w
    identified = np.linalg.norm(derivative, axis=0) > 0
    jacobian = np.concatenate(
        [evaluation.columns * w, problem.background * w, derivative[:, identified]], axis=1
    )
    n_active = int((evaluation.scales > 0).sum()) + problem.background.shape[1]
    n_params = n_active + int(identified.sum())
    dof = max(len(problem.two_theta) - n_params, 1)
    chi2 = float(np.sum(evaluation.residual**2)) / dof
    norms = np.linalg.norm(jacobian, axis=0)
    norms[norms == 0] = 1.0
    scaled = jacobian / norms
    inverse = np.linalg.pinv(scaled.T @ scaled, rcond=1e-12, hermitian=True)
    correlation = serial_correlation_factor(evaluation.residual)
    covariance = inverse / np.outer(norms, norms) * chi2 * correlation
    n_linear = evaluation.columns.shape[1] + problem.background.shape[1]
    full = np.full((n_linear + len(layout.names),) * 2, np.nan)
    keep = np.concatenate([np.arange(n_linear), n_linear + np.flatnonzero(layout.free)[identified]])
    full[np.ix_(keep, keep)] = covariance
    return full, chi2, n_params


def weight_fractions(
    phases: Sequence[RefinementPhase],
    scales: np.ndarray,
    volumes: np.ndarray,
    scale_covariance: np.ndarray,
    settings: LineSettings,
    particle_radius_um: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hill-Howard (Brindley) weight fractions and their propagated esds.

    Args:
        phases: the phases (cell mass ``Z M``, density, composition).
        scales: refined scales ``S``.
        volumes: refined cell volumes, angstrom^3.
        scale_covariance: ``(K, K)`` covariance of the scales.
        settings: the wavelength for absorption (``ka1``).
        particle_radius_um: Brindley radius, micrometre, or None.

    Returns:
        ``(w, esd)``, each ``(K,)``; all zero when every scale is zero.
    """
    zm = np.array([ph.cell_mass for ph in phases])
    if not np.any(scales > 0):
        return np.zeros(len(phases)), np.zeros(len(phases))
    kwargs: dict = {}
    tau = np.ones(len(phases))
    if particle_radius_um is not None:
        density = np.array([ph.density for ph in phases])
        mu = np.array(
            [
                linear_absorption_coefficient(Composition(ph.composition), ph.density, settings.ka1)
                for ph in phases
            ]
        )
        kwargs = {
            "linear_absorption": mu,
            "density": density,
            "particle_radius": particle_radius_um,
        }
    w = hill_howard_weight_fractions(scales, np.ones(len(phases)), zm, volumes, **kwargs)
    if particle_radius_um is not None:
        tau = brindley_factors(
            w, kwargs["linear_absorption"], kwargs["density"], particle_radius_um
        )
    k = zm * volumes / tau
    total = float(np.sum(scales * k))
    d = (np.diag(k) - np.outer(w, k)) / total
    cov = d @ np.nan_to_num(scale_covariance) @ d.T
    return w, np.sqrt(np.clip(np.diag(cov), 0.0, None))


def refinement_result(
    problem: Problem, theta: np.ndarray, options: RefinementOptions, seconds: float
) -> RefinementResult:
    layout = problem.layout
    evaluation = problem.evaluate(theta, derivatives=True)
    covariance, chi2, n_params = full_covariance(problem, evaluation)
    n_phases = len(problem.phases)
    n_linear = n_phases + problem.background.shape[1]
    esd_all = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    esd_all[np.isnan(np.diag(covariance))] = np.nan
    theta_esd = esd_all[n_linear:]
    volumes = np.array(
        [
            cell_volume(ph.lattice.constants(theta[layout.phase_lattice[p]]))
            for p, ph in enumerate(problem.phases)
        ]
    )
    scales = evaluation.scales
    w, w_esd = weight_fractions(
        problem.phases,
        scales,
        volumes,
        covariance[:n_phases, :n_phases],
        problem.settings,
        options.particle_radius_um,
    )
    phases = []
    for p, ph in enumerate(problem.phases):
        lat, wid, ratio = layout.phase_lattice[p], layout.phase_widths[p], layout.phase_ratio[p]
        b_shift = layout.own_b_shift(p)
        phases.append(
            PhaseResult(
                name=ph.name,
                scale=float(scales[p]),
                scale_esd=float(esd_all[p]),
                weight_fraction=float(w[p]),
                weight_fraction_esd=float(w_esd[p]),
                lattice=dict(zip(ph.lattice.names, theta[lat].tolist(), strict=True)),
                lattice_esd=dict(zip(ph.lattice.names, theta_esd[lat].tolist(), strict=True)),
                cell=tuple(ph.lattice.constants(theta[lat]).tolist()),
                volume=float(volumes[p]),
                widths=dict(zip(WIDTH_NAMES, theta[wid].tolist(), strict=True)),
                widths_esd=dict(zip(WIDTH_NAMES, theta_esd[wid].tolist(), strict=True)),
                march_dollase_ratio=1.0 if ratio is None else float(theta[ratio]),
                march_dollase_ratio_esd=np.nan if ratio is None else float(theta_esd[ratio]),
                contribution=evaluation.columns[:, p] * scales[p],
                march_dollase_axis=None
                if problem.axes[p] is None
                else tuple(int(v) for v in problem.axes[p]),
                b_shift=0.0 if b_shift is None else float(theta[b_shift]),
                b_shift_esd=np.nan if b_shift is None else float(theta_esd[b_shift]),
            )
        )
    weighted_obs = float(np.sum((problem.weights * problem.intensity) ** 2))
    rwp = float(np.sqrt(np.sum(evaluation.residual**2) / weighted_obs))
    rexp = float(np.sqrt(max(len(problem.two_theta) - n_params, 1) / weighted_obs))
    background = problem.background @ evaluation.background_coefficients
    return RefinementResult(
        two_theta=problem.two_theta,
        observed=problem.intensity,
        calculated=evaluation.calculated,
        background=background,
        weights=problem.weights,
        phases=tuple(phases),
        zero_shift_deg=float(theta[ParameterLayout.ZERO]),
        zero_shift_esd=float(theta_esd[ParameterLayout.ZERO]),
        sample_displacement_mm=float(theta[ParameterLayout.DISPLACEMENT]),
        sample_displacement_esd=float(theta_esd[ParameterLayout.DISPLACEMENT]),
        rwp=rwp,
        rexp=rexp,
        chi2=chi2,
        n_parameters=n_params,
        parameter_names=tuple(layout.names),
        parameter_values=theta.copy(),
        parameter_esd=theta_esd,
        background_coefficients=evaluation.background_coefficients,
        n_evaluations=problem.n_evaluations,
        seconds=seconds,
        asymmetry=layout.asymmetry(theta),
        asymmetry_esd=tuple(float(theta_esd[i]) for i in ParameterLayout.ASYMMETRY),
    )


def fractions_at(
    problem: Problem, theta: np.ndarray, options: RefinementOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Weight fractions and esds at ``theta`` (for the selection of phases)."""
    layout = problem.layout
    evaluation = problem.evaluate(theta, derivatives=True)
    covariance, _, _ = full_covariance(problem, evaluation)
    n = len(problem.phases)
    volumes = np.array(
        [
            cell_volume(ph.lattice.constants(theta[layout.phase_lattice[p]]))
            for p, ph in enumerate(problem.phases)
        ]
    )
    return weight_fractions(
        problem.phases,
        evaluation.scales,
        volumes,
        covariance[:n, :n],
        problem.settings,
        options.particle_radius_um,
    )


def absent_phase(phase: RefinementPhase, n_points: int) -> PhaseResult:
    """A dropped phase: zero scale and fraction, its reference cell, no esds."""
    values = np.asarray(phase.lattice.start, dtype=np.float64)
    cell = phase.lattice.constants(values)
    return PhaseResult(
        name=phase.name,
        scale=0.0,
        scale_esd=0.0,
        weight_fraction=0.0,
        weight_fraction_esd=0.0,
        lattice=dict(zip(phase.lattice.names, values.tolist(), strict=True)),
        lattice_esd={n: np.nan for n in phase.lattice.names},
        cell=tuple(cell.tolist()),
        volume=float(cell_volume(cell)),
        widths={n: np.nan for n in WIDTH_NAMES},
        widths_esd={n: np.nan for n in WIDTH_NAMES},
        march_dollase_ratio=1.0,
        march_dollase_ratio_esd=np.nan,
        contribution=np.zeros(n_points),
    )
