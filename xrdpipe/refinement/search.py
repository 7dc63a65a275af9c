r"""Which offered phases a scan holds: screening candidates against the current fit.

A refinement with every candidate free at once lets absent phases soak up misfit (a phase
of 600 lines with a free cell and free widths fits a little of anything): on the
independent benchmark scans, ten phases offered, the absent ones took 12.5 wt% on average.
So the fit grows its phase set instead (forward selection, as a search-match does before a
Rietveld refinement), and :func:`screen_candidates` is the cheap test of one step:

* every candidate not in the fit is rendered at the fit's zero shift, displacement,
  asymmetry and instrument widths (its own size and strain widths: the median of the
  fitted phases'),
  on its reference cell scaled isotropically by each factor of :data:`CELL_SCALES` (a
  real sample's cell is rarely the CIF's);
* for each rendering the scales of the fitted phases and the candidate, and the
  background, are solved again with the fitted phases' profiles held (one NNLS);
* its **gain** is the drop of the weighted sum of squares in units of the fit's own
  misfit per point, ``(S_0 - S_1) / (S_1 / dof) / c``, with ``c`` the serial-correlation
  factor of the residuals with the candidate in
  (:func:`~xrdpipe.refinement.solution.serial_correlation_factor`: correlated residuals
  count as ``N / c`` independent points, and a misfit of the profile shape correlates
  them over a line), against a **penalty** of ``k ln N``
  for its ``k`` parameters (scale, free cell values, its own widths) on ``N`` points: the
  Bayesian information criterion with the noise variance taken from the fit, so that a
  misfit-inflated chi^2 does not accept every extra phase (the same rule as the
  March-Dollase axis search in :mod:`xrdpipe.refinement.fit`).

The first phase of an empty fit is screened against the background alone.

A phase whose fit runs to the edge of what is physical for it (:func:`pinned`: a cell value
at its bound) is not identified by the scan, whatever its
fraction: the selection takes it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from xrdpipe.refinement.model import LineSettings
from xrdpipe.refinement.parameters import (
    DEFAULT_WIDTHS,
    ParameterLayout,
    RefinementOptions,
    build_layout,
)
from xrdpipe.refinement.phases import RefinementPhase
from xrdpipe.refinement.problem import Problem
from xrdpipe.refinement.solution import serial_correlation_factor

CELL_SCALES = tuple(float(v) for v in np.linspace(-0.006, 0.006, 13))
"""Relative isotropic changes of a candidate's cell edges tried by the screen (+-0.6 % in
steps of 0.1 %: at 2theta = 60 degrees a 0.1 % step moves a line by 0.07 degrees, under
a typical FWHM; the refit after the candidate is added then refines the cell)."""


@dataclass(frozen=True)
class CandidateScreen:
    """One candidate's test against the current fit.

    Attributes:
        name: the candidate phase.
        gain: ``(S_0 - S_1) / (S_1 / dof) / c`` at its best cell scaling (module
            docstring).
        penalty: ``k ln N``: the gain it needs to be added.
        cell_scale: the relative isotropic cell change that fitted best.
        widths: the ``U, V, W, X, Y`` it was rendered with.
    """

    name: str
    gain: float
    penalty: float
    cell_scale: float
    widths: tuple[float, ...]

    @property
    def significant(self) -> bool:
        """Whether the gain passes the penalty."""
        return self.gain > self.penalty


def candidate_parameters(phase: RefinementPhase, options: RefinementOptions) -> int:
    """Parameters a phase adds to a fit: its scale, free cell values and own widths."""
    own_widths = {"instrument": 2, "shared": 0, "per_phase": 5}[options.widths]
    lattice = len(phase.lattice.names) if options.refine_lattice else 0
    return 1 + lattice + (own_widths if options.refine_widths else 0)


def _fit_state(
    problem: Problem | None, theta: np.ndarray | None, start: dict
) -> tuple[dict, np.ndarray | None, int]:
    """A candidate's start, the fitted columns and the fit's number of nonlinear parameters.

    The start: the fit's zero, displacement, asymmetry and median widths.
    """
    if problem is None or theta is None:
        return (
            {
                "zero_shift_deg": float(start.get("zero_shift_deg", 0.0)),
                "sample_displacement_mm": float(start.get("sample_displacement_mm", 0.0)),
                "widths": tuple(float(v) for v in start.get("widths", DEFAULT_WIDTHS)),
                "asymmetry": tuple(float(v) for v in start.get("asymmetry", (0.0, 0.0))),
            },
            None,
            0,
        )
    state = {
        "zero_shift_deg": float(theta[ParameterLayout.ZERO]),
        "sample_displacement_mm": float(theta[ParameterLayout.DISPLACEMENT]),
        "widths": _median_widths(problem, theta),
        "asymmetry": problem.layout.asymmetry(theta),
    }
    return state, problem.evaluate(theta).columns, problem.layout.n_counted


def _median_widths(problem: Problem, theta: np.ndarray) -> tuple[float, ...]:
    """``U, V, W, X, Y``: the median over the fitted phases."""
    per_phase = [theta[problem.layout.phase_widths[p]] for p in range(len(problem.phases))]
    return tuple(float(v) for v in np.median(per_phase, axis=0))


def _gain(without: float, residual: np.ndarray, dof: int) -> float:
    """``(S_0 - S_1) / (S_1 / dof) / c`` for ``S_0`` = ``without`` and the residual of S_1."""
    with_cost = float(residual @ residual)
    correlation = serial_correlation_factor(residual)
    return (without - with_cost) / max(with_cost / dof, 1e-300) / correlation


def screen_candidates(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    candidates: Sequence[RefinementPhase],
    settings: LineSettings,
    options: RefinementOptions,
    *,
    problem: Problem | None = None,
    theta: np.ndarray | None = None,
    start: dict | None = None,
    weights: np.ndarray | None = None,
) -> list[CandidateScreen]:
    """Screens ``candidates`` against the fit ``(problem, theta)`` (None: an empty fit).

    Args:
        two_theta: degrees.
        intensity: counts.
        candidates: phases not in the fit.
        settings: lines and geometry.
        options: what the fit refines (the widths' sharing, the lattice).
        problem: the current fit's problem, or None before the first phase.
        theta: its solution.
        start: the refinement's starting values (used when there is no fit yet).
        weights: ``1 / sigma`` per point (default Poisson).

    Returns:
        One :class:`CandidateScreen` per candidate, the largest gain first.
    """
    state, fitted, n_theta = _fit_state(problem, theta, start or {})
    widths = state["widths"]
    plain = replace(options, march_dollase={}, fixed_lattice=())
    n_points = len(two_theta)
    screens = []
    for phase in candidates:
        layout = build_layout([phase], plain, **state)
        single = Problem(
            two_theta,
            intensity,
            [phase],
            layout,
            settings,
            options.background_order,
            [None],
            weights,
        )
        n_fixed = 0 if fitted is None else fitted.shape[1]
        base, _ = _cost(single, fitted if fitted is not None else np.zeros((n_points, 0)))
        edges = np.array([name not in ("alpha", "beta", "gamma") for name in phase.lattice.names])
        best_cost, best_scale, best_residual = np.inf, 0.0, np.zeros(0)
        for scale in CELL_SCALES:
            trial = layout.values.copy()
            lattice = layout.phase_lattice[0]
            trial[lattice[edges]] *= 1.0 + scale
            column = single.phase_column(trial, 0, False)[0]
            stacked = column[:, None] if fitted is None else np.column_stack([fitted, column])
            cost, residual = _cost(single, stacked)
            if cost < best_cost:
                best_cost, best_scale, best_residual = cost, scale, residual
        n_params = n_theta + n_fixed + 1 + single.background.shape[1]
        dof = max(n_points - n_params, 1)
        gain = _gain(base, best_residual, dof)
        penalty = candidate_parameters(phase, options) * float(np.log(n_points))
        screens.append(CandidateScreen(phase.name, float(gain), penalty, best_scale, widths))
    return sorted(screens, key=lambda s: -s.gain)


def _cost(problem: Problem, columns: np.ndarray) -> tuple[float, np.ndarray]:
    """Weighted sum of squares and residual, ``columns`` (scales >= 0) and background solved."""
    w = problem.weights
    if columns.shape[1] == 0:
        coefficients, *_ = np.linalg.lstsq(
            problem.background * w[:, None], problem.intensity * w, rcond=None
        )
        calculated = problem.background @ coefficients
    else:
        scales, coefficients = problem.solve_linear(columns)
        calculated = columns @ scales + problem.background @ coefficients
    residual = w * (problem.intensity - calculated)
    return float(residual @ residual), residual


PINNED_TOL = 1e-3
"""Share of a parameter's range within which it counts as sitting on its bound."""


def pinned(layout: ParameterLayout, theta: np.ndarray, p: int) -> bool:
    """Whether phase ``p``'s refined cell sits on a bound (a free value at either end).

    Its widths are not tested: a present phase may well have a width on its bound (a
    strain width at its largest where the profile shape is not the instrument's), while a
    cell driven 3 % away from the CIF's is a phase fitting lines that are not its own.
    """
    span = layout.upper - layout.lower
    cell = layout.phase_lattice[p]
    cell = cell[layout.free[cell]]
    values, low, high = theta[cell], layout.lower[cell], layout.upper[cell]
    return bool(
        np.any(
            (values <= low + PINNED_TOL * span[cell]) | (values >= high - PINNED_TOL * span[cell])
        )
    )


def fitted_gains(
    problem: Problem, theta: np.ndarray, options: RefinementOptions
) -> list[CandidateScreen]:
    """Each fitted phase's gain (the screen's test run backwards) and its penalty.

    The fit's cost ``S_1`` against the cost without the phase, ``S_0`` (the other phases'
    profiles held at ``theta``, their scales and the background re-solved); the gain is
    ``(S_0 - S_1) / (S_1 / dof) / c`` with ``c`` the serial-correlation factor of the fit's
    residuals, as for a candidate. A phase of the start set (a CNN's answer) is held to the
    same test as one the search added.
    """
    evaluation = problem.evaluate(theta)
    columns = evaluation.columns
    n_points = len(problem.two_theta)
    n_params = problem.layout.n_counted + columns.shape[1] + problem.background.shape[1]
    dof = max(n_points - n_params, 1)
    widths = _median_widths(problem, theta)
    out = []
    for p, phase in enumerate(problem.phases):
        without, _ = _cost(problem, np.delete(columns, p, axis=1))
        gain = _gain(without, evaluation.residual, dof)
        penalty = candidate_parameters(phase, options) * float(np.log(n_points))
        out.append(CandidateScreen(phase.name, float(gain), penalty, 0.0, widths))
    return out
