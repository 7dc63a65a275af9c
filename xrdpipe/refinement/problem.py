r"""Variable projection: the weighted residual of the nonlinear parameters alone.

For nonlinear parameters ``theta`` the model is linear in the scales and the background,
``y_calc = A(theta) c`` with ``A = [phase columns | Chebyshev columns]``. At each ``theta``
the fit solves

    c(theta) = argmin_c || W (y_obs - A c) ||,   S_p >= 0,   b_k free,

with ``W = diag(1 / sigma)``, ``sigma^2 = max(y_obs, 1)`` (Poisson) by default: the
background columns are projected out (``P_B = I - Q_B Q_B^T``), the scales solved by NNLS on
the projected phase columns, the background by least squares on what remains. The residual
``r(theta) = W (y_obs - A c(theta))`` goes to ``scipy.optimize.least_squares``; its Jacobian
is Kaufman's approximation ``J = -P_A W (dA/dtheta) c`` with ``P_A`` the projector off the
active columns (scales above zero, and the background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from xrdpipe.patterns.physics import displacement_shift_deg
from xrdpipe.refinement.model import (
    DERIVATIVE_STEP,
    Lines,
    LineSettings,
    asymmetry_angle_factor,
    asymmetry_windows,
    background_basis,
    line_widths,
    line_windows,
    phase_lines,
)
from xrdpipe.refinement.parameters import ParameterLayout
from xrdpipe.refinement.phases import RefinementPhase

MIN_VARIANCE = 1.0
"""Counts: the Poisson variance floor (a zero-count point still has weight 1)."""


def poisson_weights(intensity: np.ndarray) -> np.ndarray:
    """``1 / sigma`` with ``sigma^2 = max(y_obs, 1)``: the weights of counting statistics."""
    return 1.0 / np.sqrt(np.maximum(np.asarray(intensity, dtype=np.float64), MIN_VARIANCE))


@dataclass
class Evaluation:
    """The model at one ``theta``.

    Attributes:
        theta: the full nonlinear vector.
        columns: ``(n, K)`` unit-scale phase patterns.
        background_columns: ``(n, B)`` Chebyshev columns.
        scales: ``(K,)`` solved scales (>= 0).
        background_coefficients: ``(B,)``.
        residual: ``W (y_obs - y_calc)``.
        derivatives: per phase, ``(n, len(dependencies))`` column derivatives (or None).
    """

    theta: np.ndarray
    columns: np.ndarray
    background_columns: np.ndarray
    scales: np.ndarray
    background_coefficients: np.ndarray
    residual: np.ndarray
    derivatives: list[np.ndarray | None] | None = None

    @property
    def calculated(self) -> np.ndarray:
        """``y_calc``."""
        return self.columns @ self.scales + self.background_columns @ self.background_coefficients


class Problem:
    """A scan, its candidate phases and the parameter layout; evaluates ``r(theta)``.

    Args:
        two_theta: the scan's angles, degrees, increasing.
        intensity: counts.
        phases: the candidate phases.
        layout: the nonlinear parameters.
        settings: the lines and the instrument geometry.
        background_order: Chebyshev order.
        march_dollase_axes: per phase, its axis ``(h, k, l)`` or None.
        weights: ``1 / sigma`` per point (default :func:`poisson_weights`).
    """

    def __init__(
        self,
        two_theta: np.ndarray,
        intensity: np.ndarray,
        phases: Sequence[RefinementPhase],
        layout: ParameterLayout,
        settings: LineSettings,
        background_order: int,
        march_dollase_axes: Sequence[np.ndarray | None],
        weights: np.ndarray | None = None,
    ) -> None:
        self.two_theta = np.asarray(two_theta, dtype=np.float64)
        self.intensity = np.asarray(intensity, dtype=np.float64)
        self.phases = list(phases)
        self.layout = layout
        self.settings = settings
        self.axes = list(march_dollase_axes)
        self.weights = poisson_weights(self.intensity) if weights is None else weights
        self.background = background_basis(self.two_theta, background_order)
        w_bg = self.background * self.weights[:, None]
        self._q_background, _ = np.linalg.qr(w_bg)
        self._w_y = self.weights * self.intensity
        self._cache: Evaluation | None = None
        self.n_evaluations = 0

    # --- the lines and columns of one phase ------------------------------------------------
    def lines(self, theta: np.ndarray, p: int) -> Lines:
        """Phase ``p``'s lines at ``theta``."""
        return phase_lines(
            self.phases[p],
            self.layout.phase_parameters(theta, p),
            float(theta[ParameterLayout.ZERO]),
            float(theta[ParameterLayout.DISPLACEMENT]),
            self.settings,
            self.axes[p],
            self.layout.asymmetry(theta),
        )

    def phase_column(
        self, theta: np.ndarray, p: int, derivatives: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Phase ``p``'s unit-scale pattern and, optionally, its derivatives.

        The derivatives are with respect to ``layout.dependencies(p)`` (free or not), by the
        chain rule of :mod:`xrdpipe.refinement.model` (windows times per-line factors).
        """
        lines = self.lines(theta, p)
        values, windows = line_windows(self.two_theta, lines, derivatives)
        column = values @ lines.intensity
        if windows is None:
            return column, None
        n_lines = len(lines.position)
        deps = self.layout.dependencies(p)
        intensity_terms = np.zeros((n_lines, len(deps)))
        shape_terms = np.zeros((3 * n_lines, len(deps)))
        width_index = {int(i): j for j, i in enumerate(self.layout.phase_widths[p])}
        asymmetric = []
        for k, index in enumerate(deps):
            if not self.layout.free[index]:
                continue
            if index in ParameterLayout.ASYMMETRY:
                asymmetric.append(k)
                continue
            change = self._line_derivative(theta, p, int(index), lines, width_index)
            if change[0] is not None:
                intensity_terms[:, k] = change[0]
            for block, term in enumerate(change[1:]):
                if term is not None:
                    shape_terms[block * n_lines : (block + 1) * n_lines, k] = lines.intensity * term
        derivative = values @ intensity_terms + windows @ shape_terms
        if asymmetric:  # d/dP: the windows of pV F_a, pV F_b times I / tan(2theta_j)
            by_p = asymmetry_windows(self.two_theta, lines)
            factor = lines.intensity * asymmetry_angle_factor(lines.bragg)
            for k in asymmetric:
                derivative[:, k] = by_p[ParameterLayout.ASYMMETRY.index(int(deps[k]))] @ factor
        return column, derivative

    def _line_derivative(
        self, theta: np.ndarray, p: int, index: int, lines: Lines, width_index: dict[int, int]
    ) -> tuple[np.ndarray | None, ...]:
        """``(dI, dposition, dGamma, deta)`` per line for entry ``index`` (None: zero).

        Zero shift and displacement move positions only (``1`` and ``-2 cos(theta) / R``,
        the displacement shift per mm); widths change ``Gamma`` and ``eta`` only (central
        differences of :func:`~xrdpipe.refinement.model.line_widths`); lattice values and
        ratios by central differences of all the lines (the asymmetry's ``P_1, P_2``:
        :meth:`phase_column`).
        """
        if index == ParameterLayout.ZERO:
            return None, np.ones_like(lines.position), None, None
        if index == ParameterLayout.DISPLACEMENT:
            radius = self.settings.goniometer_radius_mm
            return None, displacement_shift_deg(lines.bragg, 1.0, radius), None, None
        kind = self.layout.kinds[index]
        step = DERIVATIVE_STEP[kind] * (abs(theta[index]) if kind == "lattice" else 1.0)
        scale = 1.0 / (2.0 * step)
        if kind == "width":
            widths = theta[self.layout.phase_widths[p]]
            up, down = widths.copy(), widths.copy()
            up[width_index[index]] += step
            down[width_index[index]] -= step
            (g_hi, e_hi), (g_lo, e_lo) = (
                line_widths(lines.bragg, up),
                line_widths(lines.bragg, down),
            )
            return None, None, (g_hi - g_lo) * scale, (e_hi - e_lo) * scale
        up, down = theta.copy(), theta.copy()
        up[index] += step
        down[index] -= step
        hi, lo = self.lines(up, p), self.lines(down, p)
        return tuple(
            (getattr(hi, name) - getattr(lo, name)) * scale
            for name in ("intensity", "position", "fwhm", "eta")
        )

    # --- variable projection ----------------------------------------------------------------
    def solve_linear(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scales (NNLS) and background (least squares) for fixed phase columns."""
        w = self.weights[:, None]
        q = self._q_background
        wa = columns * w
        wa_perp = wa - q @ (q.T @ wa)
        wy_perp = self._w_y - q @ (q.T @ self._w_y)
        norms = np.linalg.norm(wa_perp, axis=0)
        norms[norms == 0] = 1.0
        scaled, _ = optimize.nnls(wa_perp / norms, wy_perp, maxiter=50 * columns.shape[1])
        scales = scaled / norms
        rest = self._w_y - wa @ scales
        coefficients, *_ = np.linalg.lstsq(self.background * w, rest, rcond=None)
        return scales, coefficients

    def evaluate(self, theta: np.ndarray, derivatives: bool = False) -> Evaluation:
        """The model at ``theta`` (cached for the last ``theta``)."""
        cached = self._cache
        if cached is not None and np.array_equal(cached.theta, theta):
            if derivatives and cached.derivatives is None:
                cached.derivatives = self._derivatives(theta, cached.scales)
            return cached
        self.n_evaluations += 1
        columns = np.stack(
            [self.phase_column(theta, p, False)[0] for p in range(len(self.phases))], axis=1
        )
        scales, coefficients = self.solve_linear(columns)
        ders = self._derivatives(theta, scales) if derivatives else None
        calculated = columns @ scales + self.background @ coefficients
        evaluation = Evaluation(
            theta=theta.copy(),
            columns=columns,
            background_columns=self.background,
            scales=scales,
            background_coefficients=coefficients,
            residual=self.weights * (self.intensity - calculated),
            derivatives=ders,
        )
        self._cache = evaluation
        return evaluation

    def _derivatives(self, theta: np.ndarray, scales: np.ndarray) -> list[np.ndarray | None]:
        """Column derivatives of the phases present (Kaufman's J needs ``c_p dA_p``)."""
        return [
            self.phase_column(theta, p, True)[1] if scales[p] > 0 else None
            for p in range(len(self.phases))
        ]

    def model_derivative(self, evaluation: Evaluation) -> np.ndarray:
        """``(dA/dtheta) c`` for every nonlinear entry, ``(n, n_theta)`` (unweighted)."""
        assert evaluation.derivatives is not None, "evaluate(..., derivatives=True) first"
        out = np.zeros((len(self.two_theta), len(evaluation.theta)))
        for p, derivative in enumerate(evaluation.derivatives):
            scale = evaluation.scales[p]
            if scale > 0 and derivative is not None:
                out[:, self.layout.dependencies(p)] += scale * derivative
        return out

    def active_columns(self, evaluation: Evaluation) -> np.ndarray:
        """Weighted columns of the active linear parameters (scales > 0, background)."""
        active = evaluation.columns[:, evaluation.scales > 0]
        return np.concatenate([active, self.background], axis=1) * self.weights[:, None]

    def jacobian(self, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
        """Kaufman's variable-projection Jacobian of the residual over the free entries."""
        evaluation = self.evaluate(theta, derivatives=True)
        weighted = self.model_derivative(evaluation)[:, free] * self.weights[:, None]
        q, _ = np.linalg.qr(self.active_columns(evaluation))
        return -(weighted - q @ (q.T @ weighted))
