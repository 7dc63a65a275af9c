r"""The whole-pattern fit: a staged variable-projection least squares, and its two uses.

Algorithm (:func:`refine`):

1. Lay out the nonlinear parameters (:func:`~xrdpipe.refinement.parameters.build_layout`):
   zero shift, sample displacement, the asymmetry ``P_1, P_2``, TCH widths, each phase's
   symmetry-constrained lattice, March-Dollase r where asked. The scales and the Chebyshev
   background are linear and solved at every step
   (:class:`~xrdpipe.refinement.problem.Problem`: NNLS on the scales).
2. A coarse search of the zero shift over ``+-zero_search_deg`` in steps of a third of the
   narrowest start FWHM (the least squares has a basin about one FWHM wide).
3. Stages of ``scipy.optimize.least_squares`` (trust region reflective, bounds, analytic
   variable-projection Jacobian): (a) zero, displacement and the width terms W and X;
   (b) the same and the lattices; (c) everything free (the asymmetry only here). After
   (a), the own parameters (lattice, widths, ratio, B shift) of phases below
   ``minor_fraction`` are held: a minor phase's cell and widths are poorly determined; its
   scale stays free (a B shift is held below ``b_shift_min_fraction`` too).
4. With ``select_phases`` (default), which phases: a forward search from a start set with
   drops (:func:`_select`; the tests in :mod:`xrdpipe.refinement.search`).
   Then, when asked, the March-Dollase axis search (:func:`_orientation_search`) and the
   B-shift refit (:func:`_b_shift_refit`), neither of which changes the phase set.
5. At the solution, esds from the Jacobian of the full problem (linear and nonlinear),
   scaled by ``chi^2`` and the residuals' serial-correlation factor
   (:mod:`xrdpipe.refinement.solution`); Hill-Howard weight fractions.

Uses: :func:`refine` with every candidate phase offered (a baseline; the search starts from
the best single phase), and :func:`~xrdpipe.refinement.polish.polish`, which starts the
search from a given answer (a CNN's phases at or above a threshold; variable projection
needs no starting scales; the given fractions are kept for the comparison in its
``PolishResult``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from xrdpipe.refinement.model import WIDTH_NAMES, LineSettings
from xrdpipe.refinement.parameters import (
    DEFAULT_WIDTHS,
    ParameterLayout,
    RefinementOptions,
    build_layout,
)
from xrdpipe.refinement.phases import RefinementPhase, cell_volume
from xrdpipe.refinement.problem import Problem
from xrdpipe.refinement.results import RefinementResult
from xrdpipe.refinement.search import PINNED_TOL, fitted_gains, pinned, screen_candidates
from xrdpipe.refinement.solution import (
    absent_phase,
    fractions_at,
    refinement_result,
)

EARLY_STAGE_NFEV = 15
"""Evaluations of each early stage: they only bring the next stage into its basin."""

EARLY_TOL = 1e-6
"""Relative cost, step and gradient tolerance of the early stages."""

FINAL_TOL = 1e-8
"""The same of the last stage (every parameter free)."""

ORIENTATION_GRID = (0.6, 0.7, 0.8, 0.9, 1.1, 1.25, 1.4)
"""March-Dollase ratios tried along each candidate axis (the rest held; within 0.5-1.5)."""

STAGE_WIDTHS = ("W", "X")
"""Width terms free in the first stage (a mean width per phase before its angle terms)."""


def _minor_phase_entries(
    problem: Problem, theta: np.ndarray, minor: float, b_shift_minor: float = 0.0
) -> np.ndarray:
    """Entries owned by phases below ``minor`` weight fraction (held after the first stage).

    A phase's own lattice, widths (not the shared ones), March-Dollase ratio and B shift: a
    minor phase's are poorly determined and cost evaluations; its scale stays free. The B
    shift is also held below ``b_shift_minor``: it trades with the scale itself.
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
        b_shift = layout.own_b_shift(p)
        if b_shift is not None and fraction < b_shift_minor:
            held[b_shift] = True
        if fraction < minor:
            own = [i for i in layout.phase_widths[p] if i not in shared]
            extra = [i for i in (layout.phase_ratio[p], layout.own_b_shift(p)) if i is not None]
            held[np.concatenate([layout.phase_lattice[p], own, extra]).astype(np.int64)] = True
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
    asymmetry: Sequence[float] = (0.0, 0.0),
    weights: np.ndarray | None = None,
    start_phases: Sequence[str] | None = None,
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
        asymmetry: start ``P_1, P_2`` of the axial-divergence asymmetry (e.g. a
            calibration's; held there without ``options.refine_asymmetry``).
        weights: ``1 / sigma`` per point (default ``1 / sqrt(max(y, 1))``).
        start_phases: the phases fitted first (e.g. a CNN's answer); with
            ``options.select_phases`` the others stay candidates of the search
            (:func:`_select`), without it only these are fitted. None: the search starts
            from the best single phase (with selection) or fits every phase (without).

    Returns:
        The :class:`~xrdpipe.refinement.results.RefinementResult`; phases offered but not
        in the final set report zero and are listed in ``dropped``.

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
        "asymmetry": tuple(asymmetry),
    }
    # small dense algebra: one BLAS thread is ~50x faster than several fighting for cores
    with threadpool_limits(limits=1, user_api="blas"):
        searched = replace(options, refine_b_shift=False)  # the B shifts come last
        fit_args = (two_theta, intensity, settings, searched, start, weights)
        for field_name, named in (
            ("start_phases", start_phases or ()),
            ("march_dollase", options.march_dollase),
            ("fixed_lattice", options.fixed_lattice),
        ):
            unknown = set(named) - set(names)
            if unknown:
                raise ValueError(
                    f"{field_name} names {sorted(unknown)}, which are not offered phases "
                    f"{sorted(names)}"
                )
        if options.select_phases and len(phases) > 1:
            problem, theta, kept = _select(phases, start_phases, fit_args)
        else:
            kept = [ph for ph in phases if start_phases is None or ph.name in start_phases]
            problem, theta = _fit(
                two_theta, intensity, kept, settings, _for(searched, kept), start, weights
            )
        current = _for(searched, kept)
        last_args = (two_theta, intensity, kept, settings, current, start, weights)
        if options.orientation_search:
            problem, theta = _orientation_search(problem, theta, last_args)
        if options.refine_b_shift:
            problem, theta = _b_shift_refit(problem, theta, last_args)
        result = refinement_result(problem, theta, options, time.perf_counter() - started)
    kept_names = {ph.name for ph in kept}
    if kept_names == set(names):
        return result
    by_name = {p.name: p for p in result.phases}
    return replace(
        result,
        phases=tuple(by_name.get(ph.name) or absent_phase(ph, len(two_theta)) for ph in phases),
        dropped=tuple(n for n in names if n not in kept_names),
    )


def _for(options: RefinementOptions, kept: Sequence[RefinementPhase]) -> RefinementOptions:
    """``options`` with the per-phase choices of phases not in ``kept`` left out."""
    names = {ph.name for ph in kept}
    return replace(
        options,
        march_dollase={k: v for k, v in options.march_dollase.items() if k in names},
        fixed_lattice=tuple(n for n in options.fixed_lattice if n in names),
    )


def _drop(
    problem: Problem, theta: np.ndarray, kept: list[RefinementPhase], fit_args: tuple
) -> tuple[Problem, np.ndarray, list[RefinementPhase], list[str]]:
    """Drops phases below ``max(drop_fraction, drop_esd * esd)`` or pinned; refits; repeats.

    Pinned: :func:`~xrdpipe.refinement.search.pinned`. When none is, the least significant
    phase is dropped if its gain (:func:`~xrdpipe.refinement.search.fitted_gains`) fails
    its penalty, one at a time.
    """
    two_theta, intensity, settings, options, start, weights = fit_args
    dropped: list[str] = []
    while len(kept) > 1:
        fractions, esds = fractions_at(problem, theta, _for(options, kept))
        floor = np.maximum(options.drop_fraction, options.drop_esd * np.nan_to_num(esds))
        drop = [
            ph.name
            for p, (ph, w, f) in enumerate(zip(kept, fractions, floor, strict=True))
            if w < f or pinned(problem.layout, theta, p)
        ]
        if not drop:  # the least significant phase, if it fails the search's own test
            gains = fitted_gains(problem, theta, options)
            worst = min(gains, key=lambda g: g.gain - g.penalty)
            if worst.significant:
                break
            drop = [worst.name]
        if len(drop) == len(kept):  # keep the largest
            drop.remove(kept[int(np.argmax(fractions))].name)
        previous = dict(zip(problem.layout.names, theta.tolist(), strict=True))
        dropped += drop
        kept = [ph for ph in kept if ph.name not in drop]
        problem, theta = _fit(
            two_theta, intensity, kept, settings, _for(options, kept), start, weights, previous
        )
    return problem, theta, kept, dropped


def _select(
    phases: Sequence[RefinementPhase], start_phases: Sequence[str] | None, fit_args: tuple
) -> tuple[Problem, np.ndarray, list[RefinementPhase]]:
    """The phase set of the scan: a start set, then drops and screened additions.

    Start: ``start_phases`` (e.g. a CNN's answer), else the candidate of largest gain
    against the background alone (:func:`~xrdpipe.refinement.search.screen_candidates`).
    Then, until nothing changes: :func:`_drop`; screen the phases not in the fit and never
    dropped; add the best if its gain passes its penalty and refit; a phase added that
    comes out below the drop floor or :func:`~xrdpipe.refinement.search.pinned` is taken
    out again (the previous fit stands) and not tried again. When the final set is not
    the start set, it is also fitted afresh (zero search and stages from the refinement's
    start) and the better fit kept.
    """
    two_theta, intensity, settings, options, start, weights = fit_args
    by_name = {ph.name: ph for ph in phases}
    if start_phases:
        kept = [by_name[n] for n in by_name if n in set(start_phases)]
    else:
        screens = screen_candidates(
            two_theta, intensity, phases, settings, options, start=start, weights=weights
        )
        kept = [by_name[screens[0].name]]
    first = list(kept)
    problem, theta = _fit(two_theta, intensity, kept, settings, _for(options, kept), start, weights)
    rejected: set[str] = set()
    for _ in range(2 * len(phases)):
        problem, theta, kept, dropped = _drop(problem, theta, kept, fit_args)
        rejected.update(dropped)
        names = {ph.name for ph in kept}
        others = [ph for ph in phases if ph.name not in names and ph.name not in rejected]
        if not others:
            break
        best = screen_candidates(
            two_theta,
            intensity,
            others,
            settings,
            options,
            problem=problem,
            theta=theta,
            weights=weights,
        )[0]
        if not best.significant:
            break
        added = by_name[best.name]
        previous = dict(zip(problem.layout.names, theta.tolist(), strict=True))
        for name, start_value in zip(added.lattice.names, added.lattice.start, strict=True):
            is_edge = name not in ("alpha", "beta", "gamma")
            previous[f"{added.name}.{name}"] = start_value * (
                1.0 + best.cell_scale if is_edge else 1.0
            )
        for width_name, value in zip(WIDTH_NAMES, best.widths, strict=True):
            previous.setdefault(f"{added.name}.{width_name}", value)
        trial_kept = [*kept, added]
        trial_options = _for(options, trial_kept)
        trial_problem, trial_theta = _fit(
            two_theta, intensity, trial_kept, settings, trial_options, start, weights, previous
        )
        fractions, esds = fractions_at(trial_problem, trial_theta, trial_options)
        floor = max(options.drop_fraction, options.drop_esd * float(np.nan_to_num(esds[-1])))
        if fractions[-1] < floor or pinned(trial_problem.layout, trial_theta, len(kept)):
            rejected.add(added.name)
            continue
        problem, theta, kept = trial_problem, trial_theta, trial_kept
    if {ph.name for ph in kept} != {ph.name for ph in first}:
        # the zero shift and displacement were found with the start set: a start phase the
        # scan does not hold can leave them far off, so the final set is also fitted afresh
        fresh = _fit(two_theta, intensity, kept, settings, _for(options, kept), start, weights)
        if _sum_of_squares(*fresh) < _sum_of_squares(problem, theta):
            problem, theta = fresh
    return problem, theta, kept


def _sum_of_squares(problem: Problem, theta: np.ndarray) -> float:
    return float(np.sum(problem.evaluate(theta).residual ** 2))


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
    problem, theta = _problem(
        two_theta, intensity, phases, settings, options, start, weights, previous
    )
    stages = _stage_masks(problem.layout)
    if previous is None:
        theta = _zero_search(problem, theta, options.zero_search_deg)
    else:
        stages = stages[-1:]
    for i, free in enumerate(stages):
        last = i == len(stages) - 1
        if i > 0 or previous is not None:
            free = free & ~_minor_phase_entries(
                problem, theta, options.minor_fraction, options.b_shift_min_fraction
            )
        nfev = options.max_nfev if last else EARLY_STAGE_NFEV
        theta = _least_squares(problem, theta, free, nfev, FINAL_TOL if last else EARLY_TOL)
    return problem, theta


def _problem(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    phases: Sequence[RefinementPhase],
    settings: LineSettings,
    options: RefinementOptions,
    start: dict,
    weights: np.ndarray | None,
    previous: Mapping[str, float] | None = None,
) -> tuple[Problem, np.ndarray]:
    """The problem of ``phases`` and its start (``previous`` values by name where given)."""
    layout = build_layout(phases, options, **start)
    axes = [
        None if ph.name not in options.march_dollase else np.array(options.march_dollase[ph.name])
        for ph in phases
    ]
    problem = Problem(
        two_theta, intensity, phases, layout, settings, options.background_order, axes, weights
    )
    theta = layout.values.copy()
    for i, name in enumerate(layout.names):
        if previous is not None and name in previous:
            theta[i] = np.clip(previous[name], layout.lower[i], layout.upper[i])
    return problem, theta


def orientation_axes(crystal_system: str) -> tuple[tuple[int, int, int], ...]:
    """Candidate March-Dollase axes, symmetry-distinct for ``crystal_system``."""
    if crystal_system == "cubic":
        return ((0, 0, 1), (1, 1, 0), (1, 1, 1))
    if crystal_system in ("tetragonal", "hexagonal", "trigonal"):
        return ((0, 0, 1), (1, 0, 0), (1, 1, 0))
    return ((0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 0), (1, 1, 1))


def _b_shift_refit(
    problem: Problem, theta: np.ndarray, fit_args: tuple
) -> tuple[Problem, np.ndarray]:
    """The final set refitted with each phase's B shift free (``refine_b_shift``).

    The last stage from the fit's values; phases below ``b_shift_min_fraction`` keep theirs
    at 0. After the phase search and the axis search, not inside them: freed there, a B
    shift let a phase the scan does not hold keep only its low-angle lines and take misfit
    (+3 angstrom^2, its bound), and a present phase that ran to the bound was dropped. If a
    shift still runs to its upper bound here, the fit without shifts stands.
    """
    two_theta, intensity, kept, settings, options, start, weights = fit_args
    axes = {
        ph.name: tuple(int(v) for v in axis)
        for ph, axis in zip(kept, problem.axes, strict=True)
        if axis is not None
    }
    shifted = replace(options, refine_b_shift=True, march_dollase=axes)
    previous = dict(zip(problem.layout.names, theta.tolist(), strict=True))
    new_problem, new_theta = _fit(
        two_theta, intensity, kept, settings, shifted, start, weights, previous
    )
    layout = new_problem.layout
    for p in range(len(kept)):
        index = layout.own_b_shift(p)
        if index is not None and new_theta[index] >= layout.upper[index] - PINNED_TOL * (
            layout.upper[index] - layout.lower[index]
        ):
            return problem, theta
    return new_problem, new_theta


def _orientation_search(
    problem: Problem, theta: np.ndarray, fit_args: tuple
) -> tuple[Problem, np.ndarray]:
    """Searches a March-Dollase axis for each phase above ``orientation_min_fraction``.

    Phases already given an axis are left alone; the best axis of
    :func:`orientation_axes` is kept if it passes the scaled BIC test below, and then
    everything is refitted with the kept axes.

    Each axis is screened on the ratios of ``ORIENTATION_GRID`` (the rest held at the
    current fit, scales and background re-solved). The best axis is kept when
    ``(S_0 - S_1) / (S_1 / dof) > ln N`` (``S`` the weighted sum
    of squares without and with it): BIC with the noise variance taken from the fit's own
    misfit, so that a misfit-inflated chi^2 does not accept every extra parameter.
    """
    two_theta, intensity, kept, settings, options, start, weights = fit_args
    fractions, _ = fractions_at(problem, theta, options)
    previous = dict(zip(problem.layout.names, theta.tolist(), strict=True))
    base = float(np.sum(problem.evaluate(theta).residual ** 2))
    n_points = len(two_theta)
    dof = max(n_points - problem.layout.n_counted - len(kept) - options.background_order, 1)
    chosen: dict[str, tuple[int, int, int]] = {}
    for p, phase in enumerate(kept):
        if fractions[p] < options.orientation_min_fraction or phase.name in options.march_dollase:
            continue
        best, best_axis = base, None
        for axis in orientation_axes(phase.lattice.crystal_system):
            trial = replace(options, march_dollase={**options.march_dollase, phase.name: axis})
            trial_problem, trial_theta = _problem(
                two_theta, intensity, kept, settings, trial, start, weights, previous
            )
            index = trial_problem.layout.names.index(f"{phase.name}.march_dollase_r")
            for ratio in ORIENTATION_GRID:
                trial_theta[index] = ratio
                cost = float(np.sum(trial_problem.evaluate(trial_theta).residual ** 2))
                if cost < best:
                    best, best_axis = cost, axis
        if best_axis is not None and (base - best) / (best / dof) > np.log(n_points):
            chosen[phase.name] = best_axis
    if not chosen:
        return problem, theta
    final = replace(options, march_dollase={**options.march_dollase, **chosen})
    return _fit(two_theta, intensity, kept, settings, final, start, weights, previous)
