r"""What a refinement returns: per-phase scales, weight fractions, cells and widths with esds.

Agreement indices (weights ``w_i = 1 / sigma_i^2``, ``N`` points, ``P`` refined parameters,
linear and nonlinear):

    R_wp = sqrt( sum w (y_obs - y_calc)^2 / sum w y_obs^2 ),
    R_exp = sqrt( (N - P) / sum w y_obs^2 ),
    chi^2 = (R_wp / R_exp)^2 = sum w (y_obs - y_calc)^2 / (N - P).

Estimated standard deviations: ``cov = (J^T J)^-1 chi^2`` with ``J`` the Jacobian of the
weighted residual over every refined parameter (the scales and background coefficients as
well as the nonlinear ones) at the solution, as Rietveld programs report them.

Weight fractions by Hill-Howard (``w_p ~ S_p Z_p M_p V_p / tau_p``,
:func:`xrdpipe.diffraction.hill_howard_weight_fractions`, with Brindley's ``tau`` when a
particle radius is given); their esds propagate the scales' covariance,
``cov_w = D cov_S D^T`` with ``D_pq = (delta_pq k_p - w_p k_q) / sum_r S_r k_r``,
``k = Z M V / tau`` (``tau`` held at its converged value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PhaseResult:
    """One phase after the refinement.

    Attributes:
        name: the phase's label.
        scale: S on the ``intensity_raw`` convention (counts per ``|F|^2 m LP``).
        scale_esd: its esd.
        weight_fraction: Hill-Howard (Brindley) weight fraction, 0-1 (relative crystalline).
        weight_fraction_esd: its esd.
        lattice: the free lattice values by name (``a``, ``c``, ``beta``...).
        lattice_esd: their esds (NaN for a phase at zero scale).
        cell: ``(a, b, c, alpha, beta, gamma)`` of the refined cell.
        volume: refined cell volume, angstrom^3.
        widths: ``U, V, W, X, Y`` by name.
        widths_esd: their esds.
        march_dollase_ratio: refined r (1.0 when not refined).
        march_dollase_ratio_esd: its esd (NaN when not refined).
        contribution: the phase's calculated pattern, counts (for plots).
        march_dollase_axis: the March-Dollase axis ``(h, k, l)`` (given or found by the
            axis search), or None.
        b_shift: the refined overall B shift, angstrom^2 (0 when not refined).
        b_shift_esd: its esd (NaN when not refined).
    """

    name: str
    scale: float
    scale_esd: float
    weight_fraction: float
    weight_fraction_esd: float
    lattice: dict[str, float]
    lattice_esd: dict[str, float]
    cell: tuple[float, ...]
    volume: float
    widths: dict[str, float]
    widths_esd: dict[str, float]
    march_dollase_ratio: float
    march_dollase_ratio_esd: float
    contribution: np.ndarray = field(repr=False)
    march_dollase_axis: tuple[int, int, int] | None = None
    b_shift: float = 0.0
    b_shift_esd: float = float("nan")


@dataclass(frozen=True)
class RefinementResult:
    """A whole-pattern refinement (module docstring: indices and esds).

    Attributes:
        two_theta: the scan's angles, degrees.
        observed: counts.
        calculated: ``y_calc``.
        background: the Chebyshev background.
        weights: ``1 / sigma`` per point.
        phases: per phase, in the order offered.
        zero_shift_deg: refined zero shift, degrees, and its esd.
        zero_shift_esd: esd.
        sample_displacement_mm: refined displacement, mm.
        sample_displacement_esd: esd.
        asymmetry: the axial-divergence asymmetry ``(P_1, P_2)``
            (:func:`~xrdpipe.refinement.model.asymmetry_factor`).
        asymmetry_esd: their esds (NaN when held).
        rwp: R_wp.
        rexp: R_exp.
        chi2: the goodness of fit squared, ``(R_wp / R_exp)^2``.
        n_parameters: refined parameters, linear and nonlinear.
        parameter_names: every nonlinear parameter.
        parameter_values: their values.
        parameter_esd: their esds (NaN when held or at zero scale).
        background_coefficients: Chebyshev coefficients.
        n_evaluations: model evaluations.
        seconds: wall time of the fit.
        dropped: phases dropped by the selection (``RefinementOptions.select_phases``), in
            the order offered; they report zero scale and weight fraction.
    """

    two_theta: np.ndarray = field(repr=False)
    observed: np.ndarray = field(repr=False)
    calculated: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    phases: tuple[PhaseResult, ...]
    zero_shift_deg: float
    zero_shift_esd: float
    sample_displacement_mm: float
    sample_displacement_esd: float
    rwp: float
    rexp: float
    chi2: float
    n_parameters: int
    parameter_names: tuple[str, ...]
    parameter_values: np.ndarray = field(repr=False)
    parameter_esd: np.ndarray = field(repr=False)
    background_coefficients: np.ndarray = field(repr=False)
    n_evaluations: int = 0
    seconds: float = 0.0
    dropped: tuple[str, ...] = ()
    asymmetry: tuple[float, float] = (0.0, 0.0)
    asymmetry_esd: tuple[float, float] = (np.nan, np.nan)

    @property
    def residual(self) -> np.ndarray:
        """``y_obs - y_calc``, counts."""
        return self.observed - self.calculated

    @property
    def goodness_of_fit(self) -> float:
        """``R_wp / R_exp`` (``sqrt(chi^2)``)."""
        return float(np.sqrt(self.chi2))

    def phase(self, name: str) -> PhaseResult:
        """The result of the phase called ``name``."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(f"no phase {name!r}; phases: {[p.name for p in self.phases]}")

    def weight_fractions(self) -> dict[str, float]:
        """``{name: weight fraction}``."""
        return {p.name: p.weight_fraction for p in self.phases}

    def table(self) -> list[dict[str, object]]:
        """One row per phase (name, wt%, esd, scale, cell, widths): for CSV or JSON."""
        rows = []
        for p in self.phases:
            rows.append(
                {
                    "phase": p.name,
                    "weight_percent": 100.0 * p.weight_fraction,
                    "weight_percent_esd": 100.0 * p.weight_fraction_esd,
                    "scale": p.scale,
                    "scale_esd": p.scale_esd,
                    **{f"cell_{k}": v for k, v in zip(CELL_NAMES, p.cell, strict=True)},
                    **{f"width_{k}": v for k, v in p.widths.items()},
                    "march_dollase_r": p.march_dollase_ratio,
                    "b_shift": p.b_shift,
                    "rwp": self.rwp,
                    "chi2": self.chi2,
                }
            )
        return rows


CELL_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")
