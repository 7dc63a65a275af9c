r"""The whole-pattern fit: a staged variable-projection least squares, and its two uses.

Algorithm (:func:`refine`):

1. Lay out the nonlinear parameters (:func:`~xrdpipe.refinement.parameters.build_layout`):
   zero shift, sample displacement, TCH widths, each phase's symmetry-constrained lattice,
   March-Dollase r where asked. The scales and the Chebyshev background are linear and
   solved at every step (:class:`~xrdpipe.refinement.problem.Problem`: NNLS on the scales).
2. A coarse search of the zero shift over ``+-zero_search_deg`` in steps of a third of the
   narrowest start FWHM (the least squares has a basin about one FWHM wide).
3. Stages of ``scipy.optimize.least_squares`` (trust region reflective, bounds, analytic
   variable-projection Jacobian): (a) zero, displacement and the width terms W and X;
   (b) the same and the lattices; (c) everything free. After (a), the own parameters
   (lattice, widths, ratio) of phases below ``minor_fraction`` are held: a minor phase's
   cell and widths are poorly determined; its scale stays free.
4. At the solution, esds from the Jacobian of the full problem (linear and nonlinear),
   scaled by ``chi^2`` (:mod:`xrdpipe.refinement.results`); Hill-Howard weight fractions.

Uses: :func:`refine` with every candidate phase (a baseline), and :func:`polish`, which
starts from a given answer (a CNN's fractions): phases below a threshold are dropped and the
rest refined (variable projection needs no starting scales; the given fractions are kept for
the comparison in :class:`PolishResult`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from pymatgen.core import Composition
from scipy import optimize
from threadpoolctl import threadpool_limits

from xrdpipe.diffraction import brindley_factors, hill_howard_weight_fractions
from xrdpipe.diffraction.quantitative import linear_absorption_coefficient
from xrdpipe.refinement.model import WIDTH_NAMES, LineSettings
from xrdpipe.refinement.parameters import (
    DEFAULT_WIDTHS,
    ParameterLayout,
    RefinementOptions,
    build_layout,
)
from xrdpipe.refinement.phases import RefinementPhase, cell_volume
from xrdpipe.refinement.problem import Evaluation, Problem
from xrdpipe.refinement.results import PhaseResult, RefinementResult

EARLY_STAGE_NFEV = 15
"""Evaluations of each early stage: they only bring the next stage into its basin."""

EARLY_TOL = 1e-6
"""Relative cost, step and gradient tolerance of the early stages."""

FINAL_TOL = 1e-8
"""The same of the last stage (every parameter free)."""

STAGE_WIDTHS = ("W", "X")
"""Width terms free in the first stage (a mean width per phase before its angle terms)."""


def _minor_phase_entries(problem: Problem, theta: np.ndarray, minor: float) -> np.ndarray:
    """Entries owned by phases below ``minor`` weight fraction (held after the first stage).

    A phase's own lattice, widths (not the shared ones) and March-Dollase ratio: a minor
    phase's are poorly determined and cost evaluations; its scale stays free.
    """
    layout = problem.layout
    scales = problem.evaluate(theta).scales
    held = np.zeros(len(layout.names), dtype=bool)
    if not np.any(scales > 0):
        return held
    volumes = [cell_volume(ph.lattice.constants(theta[layout.phase_lattice[p]]))
               for p, ph in enumerate(problem.phases)]  # fmt: skip
    mass = scales * np.array([ph.cell_mass for ph in problem.phases]) * np.array(volumes)
    fractions = mass / mass.sum()
    shared = set()
    for p in range(len(problem.phases)):
        for q in range(p + 1, len(problem.phases)):
            shared |= set(layout.phase_widths[p]) & set(layout.phase_widths[q])
    for p, fraction in enumerate(fractions):
        if fraction < minor:
            own = [i for i in layout.phase_widths[p] if i not in shared]
            ratio = [] if layout.phase_ratio[p] is None else [layout.phase_ratio[p]]
            held[np.concatenate([layout.phase_lattice[p], own, ratio]).astype(np.int64)] = True
    return held


def _stage_masks(layout: ParameterLayout) -> list[np.ndarray]:
    first = np.zeros(len(layout.names), dtype=bool)
    first[[ParameterLayout.ZERO, ParameterLayout.DISPLACEMENT]] = True
    for i, kind in enumerate(layout.kinds):
        if kind == "width" and layout.names[i].rsplit(".", 1)[-1] in STAGE_WIDTHS:
            first[i] = True
    second = first | np.array([k == "lattice" for k in layout.kinds])
    third = np.ones(len(layout.names), dtype=bool)
    return [m & layout.free for m in (first, second, third) if (m & layout.free).any()]


def _zero_search(problem: Problem, theta: np.ndarray, half_width: float) -> np.ndarray:
    """The zero shift of least weighted residual on a grid (step: a third of a FWHM)."""
    if half_width <= 0 or not problem.layout.free[ParameterLayout.ZERO]:
        return theta
    fwhm = min(float(problem.lines(theta, p).fwhm.min()) for p in range(len(problem.phases)))
    step = max(fwhm / 3.0, 1e-3)
    start = theta[ParameterLayout.ZERO]
    best, best_cost = theta, np.inf
    for offset in np.arange(-half_width, half_width + step / 2, step):
        trial = theta.copy()
        trial[ParameterLayout.ZERO] = np.clip(
            start + offset, problem.layout.lower[0], problem.layout.upper[0]
        )
        cost = float(np.sum(problem.evaluate(trial).residual ** 2))
        if cost < best_cost:
            best, best_cost = trial, cost
    return best


def _least_squares(
    problem: Problem, theta: np.ndarray, free: np.ndarray, max_nfev: int, tol: float
) -> np.ndarray:
    layout = problem.layout

    def full(x: np.ndarray) -> np.ndarray:
        out = theta.copy()
        out[free] = x
        return out

    result = optimize.least_squares(
        lambda x: problem.evaluate(full(x)).residual,
        theta[free],
        jac=lambda x: problem.jacobian(full(x), free),
        bounds=(layout.lower[free], layout.upper[free]),
        method="trf",
        x_scale="jac",
        ftol=tol,
        xtol=tol,
        gtol=tol,
        max_nfev=max_nfev,
    )
    return full(result.x)


def _covariance(problem: Problem, evaluation: Evaluation) -> tuple[np.ndarray, float, int]:
    """``(J^T J)^+ chi^2`` over [scales, background, free nonlinear]; chi^2; parameters."""
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
    covariance = inverse / np.outer(norms, norms) * chi2
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


def _result(
    problem: Problem, theta: np.ndarray, options: RefinementOptions, seconds: float
) -> RefinementResult:
    layout = problem.layout
    evaluation = problem.evaluate(theta, derivatives=True)
    covariance, chi2, n_params = _covariance(problem, evaluation)
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
    )


def refine(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    phases: Sequence[RefinementPhase],
    settings: LineSettings | None = None,
    options: RefinementOptions | None = None,
    *,
    zero_shift_deg: float = 0.0,
    sample_displacement_mm: float = 0.0,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    weights: np.ndarray | None = None,
) -> RefinementResult:
    """Refines a scan with the offered phases (the module docstring's algorithm).

    Args:
        two_theta: the scan's angles, degrees, increasing (uniform steps or nearly).
        intensity: counts (the default Poisson weights need counts, not rescaled values).
        phases: the candidate phases (:func:`~xrdpipe.refinement.phases.phase_from_structure`).
        settings: lines and instrument geometry (default Cu K-alpha1/2, R = 240 mm).
        options: what is refined (default :class:`RefinementOptions`).
        zero_shift_deg: start (e.g. from a calibration).
        sample_displacement_mm: start.
        widths: start ``U, V, W, X, Y`` (e.g. a calibration's; with
            ``options.instrument_widths_fixed`` U, V, W stay there).
        weights: ``1 / sigma`` per point (default ``1 / sqrt(max(y, 1))``).

    Returns:
        The :class:`~xrdpipe.refinement.results.RefinementResult`.

    Raises:
        ValueError: no phase, a scan that is not increasing or not as long as its
            intensities.
    """
    started = time.perf_counter()
    if not phases:
        raise ValueError("refine needs at least one phase (got none)")
    two_theta = np.asarray(two_theta, dtype=np.float64)
    intensity = np.asarray(intensity, dtype=np.float64)
    if two_theta.shape != intensity.shape or two_theta.ndim != 1 or len(two_theta) < 16:
        raise ValueError(
            f"two_theta {two_theta.shape} and intensity {intensity.shape} must be equal 1-d "
            "arrays of at least 16 points"
        )
    if np.any(np.diff(two_theta) <= 0):
        raise ValueError("two_theta must be strictly increasing")
    names = [ph.name for ph in phases]
    if len(set(names)) != len(names):
        raise ValueError(f"phase names {names} must be distinct")
    settings = settings or LineSettings()
    options = options or RefinementOptions()
    start = {
        "zero_shift_deg": zero_shift_deg,
        "sample_displacement_mm": sample_displacement_mm,
        "widths": widths,
    }
    # small dense algebra: one BLAS thread is ~50x faster than several fighting for cores
    with threadpool_limits(limits=1, user_api="blas"):
        problem, theta = _fit(two_theta, intensity, phases, settings, options, start, weights)
        kept = list(phases)
        dropped: list[str] = []
        while options.select_phases and len(kept) > 1:
            fractions, esds = _fractions(problem, theta, options)
            floor = np.maximum(options.drop_fraction, options.drop_esd * np.nan_to_num(esds))
            drop = [ph.name for ph, w, f in zip(kept, fractions, floor, strict=True) if w < f]
            if not drop:
                break
            if len(drop) == len(kept):  # keep the largest
                drop.remove(kept[int(np.argmax(fractions))].name)
            previous = dict(zip(problem.layout.names, theta.tolist(), strict=True))
            dropped += drop
            kept = [ph for ph in kept if ph.name not in drop]
            sub_options = replace(
                options,
                march_dollase={k: v for k, v in options.march_dollase.items() if k not in drop},
                fixed_lattice=tuple(n for n in options.fixed_lattice if n not in drop),
            )
            problem, theta = _fit(
                two_theta, intensity, kept, settings, sub_options, start, weights, previous
            )
        result = _result(problem, theta, options, time.perf_counter() - started)
    if not dropped:
        return result
    by_name = {p.name: p for p in result.phases}
    return replace(
        result,
        phases=tuple(by_name.get(ph.name) or _absent(ph, len(two_theta)) for ph in phases),
        dropped=tuple(n for n in names if n in dropped),
    )


def _fit(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    phases: Sequence[RefinementPhase],
    settings: LineSettings,
    options: RefinementOptions,
    start: dict,
    weights: np.ndarray | None,
    previous: Mapping[str, float] | None = None,
) -> tuple[Problem, np.ndarray]:
    """One staged fit of ``phases``.

    ``previous``: values by parameter name of an earlier fit (a refit after dropping
    phases: no zero search, the last stage only).
    """
    layout = build_layout(phases, options, **start)
    axes = [
        None if ph.name not in options.march_dollase else np.array(options.march_dollase[ph.name])
        for ph in phases
    ]
    problem = Problem(
        two_theta, intensity, phases, layout, settings, options.background_order, axes, weights
    )
    theta = layout.values.copy()
    stages = _stage_masks(layout)
    if previous is None:
        theta = _zero_search(problem, theta, options.zero_search_deg)
    else:
        for i, name in enumerate(layout.names):
            if name in previous:
                theta[i] = np.clip(previous[name], layout.lower[i], layout.upper[i])
        stages = stages[-1:]
    for i, free in enumerate(stages):
        last = i == len(stages) - 1
        if i > 0 or previous is not None:
            free = free & ~_minor_phase_entries(problem, theta, options.minor_fraction)
        nfev = options.max_nfev if last else EARLY_STAGE_NFEV
        theta = _least_squares(problem, theta, free, nfev, FINAL_TOL if last else EARLY_TOL)
    return problem, theta


def _fractions(
    problem: Problem, theta: np.ndarray, options: RefinementOptions
) -> tuple[np.ndarray, np.ndarray]:
    """Weight fractions and esds at ``theta`` (for the selection of phases)."""
    layout = problem.layout
    evaluation = problem.evaluate(theta, derivatives=True)
    covariance, _, _ = _covariance(problem, evaluation)
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


def _absent(phase: RefinementPhase, n_points: int) -> PhaseResult:
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


@dataclass(frozen=True)
class PolishResult:
    """A given answer (e.g. a CNN's) and the refinement that started from it.

    Attributes:
        given: the given weight fractions by phase (every phase offered).
        kept: the phases at or above the threshold, which were refined.
        refinement: the refinement of the kept phases.
        difference: refined minus given weight fraction, by phase (dropped phases: minus
            the given value).
    """

    given: dict[str, float]
    kept: tuple[str, ...]
    refinement: RefinementResult
    difference: dict[str, float]


def polish(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    phases: Sequence[RefinementPhase],
    fractions: Mapping[str, float],
    settings: LineSettings | None = None,
    options: RefinementOptions | None = None,
    *,
    threshold: float = 0.01,
    **start: object,
) -> PolishResult:
    """Refines from a given phase set and fractions (``--refine`` after a CNN).

    Phases whose given fraction is below ``threshold`` are dropped; the rest are refined by
    :func:`refine` (the scales are solved, not started from the fractions: variable
    projection needs no linear starting values).

    Args:
        two_theta: degrees.
        intensity: counts.
        phases: every candidate phase (names must match ``fractions``' keys).
        fractions: the given weight fractions by phase name (missing names count as 0).
        settings: lines and geometry.
        options: what is refined.
        threshold: the least given fraction kept (0.01: 1 wt%).
        **start: starting values passed to :func:`refine` (``zero_shift_deg``, ...).

    Returns:
        The :class:`PolishResult`.

    Raises:
        ValueError: ``fractions`` names an unknown phase, or no phase reaches the threshold.
    """
    by_name = {ph.name: ph for ph in phases}
    unknown = set(fractions) - set(by_name)
    if unknown:
        raise ValueError(
            f"fractions name unknown phases {sorted(unknown)}; known: {sorted(by_name)}"
        )
    given = {name: float(fractions.get(name, 0.0)) for name in by_name}
    kept = tuple(name for name in by_name if given[name] >= threshold)
    if not kept:
        raise ValueError(f"no phase has a given fraction >= threshold {threshold}: {given}")
    result = refine(
        two_theta,
        intensity,
        [by_name[n] for n in kept],
        settings,
        options,
        **start,  # type: ignore[arg-type]
    )
    refined = result.weight_fractions()
    difference = {name: refined.get(name, 0.0) - given[name] for name in by_name}
    return PolishResult(given, kept, result, difference)
