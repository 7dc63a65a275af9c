"""The forward model against the engine's rendering, and its analytic derivatives."""

from __future__ import annotations

import numpy as np
import pytest

from tests.refinement.conftest import MIXTURE_IDS, jacobian_errors
from tests.refinement.engine_scan import Planted, engine_scan
from xrdpipe.refinement import LineSettings, RefinementOptions
from xrdpipe.refinement.model import (
    PhaseParameters,
    background_basis,
    phase_lines,
    unit_area_pseudo_voigt,
)
from xrdpipe.refinement.parameters import build_layout
from xrdpipe.refinement.problem import Problem


def test_pseudo_voigt_area_and_derivatives():
    offset = np.linspace(-5, 5, 200001)
    value, d_centre, d_fwhm, d_eta = unit_area_pseudo_voigt(offset, 0.2, 0.4)
    # unit area up to the Lorentzian tail beyond +-5 degrees: eta (2/pi) atan(0.1/5) ... both sides
    tail = 0.4 * (1 - 2 / np.pi * np.arctan(5 / 0.1))
    assert value.sum() * 5e-5 == pytest.approx(1 - tail, rel=1e-6)
    h = 1e-6
    for derivative, shifted in (
        (d_centre, lambda e: unit_area_pseudo_voigt(offset - e, 0.2, 0.4)[0]),
        (d_fwhm, lambda e: unit_area_pseudo_voigt(offset, 0.2 + e, 0.4)[0]),
        (d_eta, lambda e: unit_area_pseudo_voigt(offset, 0.2, 0.4 + e)[0]),
    ):
        numeric = (shifted(h) - shifted(-h)) / (2 * h)
        np.testing.assert_allclose(derivative, numeric, atol=1e-5 * np.abs(numeric).max())


PLANTED = Planted(
    weight_fractions=[0.3, 0.4, 0.3],
    zero_shift_deg=0.03,
    sample_displacement_mm=0.08,
    x=[0.03, 0.08, 0.05],
    y=[0.02, 0.01, 0.04],
    noise=False,
)


def truth_problem(phases, structures, weights=None, **option_changes):
    """The expected counts of an engine scan and the model's parameters at the truth."""
    two_theta, expected = engine_scan(structures, PLANTED)
    options = RefinementOptions(widths="per_phase", background_order=3, **option_changes)
    layout = build_layout(phases, options, zero_shift_deg=0.03, sample_displacement_mm=0.08)
    theta = layout.values.copy()
    for p, structure in enumerate(structures):
        theta[layout.phase_widths[p]] = [
            PLANTED.u,
            PLANTED.v,
            PLANTED.w,
            PLANTED.x[p],
            PLANTED.y[p],
        ]
        abc = structure.lattice.abc
        theta[layout.phase_lattice[p]] = [abc["abc".index(n)] for n in phases[p].lattice.names]
    problem = Problem(
        two_theta, expected, phases, layout, LineSettings(), 3, [None] * 3, weights=weights
    )
    return problem, theta


def test_model_equals_the_engine_at_the_planted_values(mixture_phases, planted_structures):
    """Expected counts of an engine scan against the model at the truth (scales solved)."""
    problem, theta = truth_problem(mixture_phases, planted_structures, np.ones(3501))
    evaluation = problem.evaluate(theta)
    expected = problem.intensity
    error = np.abs(evaluation.calculated - expected).max() / expected.max()
    assert error < 2e-3
    # the Chebyshev part is the planted one (in units of the peak maximum, counts here)
    peak_max = (evaluation.columns @ evaluation.scales).max()
    coefficients = evaluation.background_coefficients / peak_max
    np.testing.assert_allclose(coefficients, PLANTED.chebyshev, atol=2e-3)
    # scales on the intensity_raw convention: S ~ w / (rho V^2), i.e. w ~ S Z M V
    zmv = np.array([ph.cell_mass for ph in mixture_phases]) * np.array(
        [s.volume for s in planted_structures]
    )
    w = evaluation.scales * zmv / np.sum(evaluation.scales * zmv)
    np.testing.assert_allclose(w, PLANTED.weight_fractions, atol=2e-3)


def test_jacobian_matches_finite_differences(mixture_phases, planted_structures):
    """At the truth (residual ~ 0) Kaufman's Jacobian is the full one."""
    problem, theta = truth_problem(mixture_phases, planted_structures)
    for name, error, scale in jacobian_errors(problem, theta, problem.layout.free.copy()):
        assert error <= 0.02 * scale, name


def test_b_shift_scales_each_line_by_its_debye_waller_factor(mixture_phases, planted_structures):
    """``dB`` multiplies every line by ``exp(-dB / 2d^2)`` (by hand at d = 1 and 2
    angstrom: 0.7788 and 0.9394 for dB = 0.5); the Jacobian holds with ``dB`` free."""
    phase = mixture_phases[2]
    lattice = np.asarray(phase.lattice.start)
    widths = np.array([PLANTED.u, PLANTED.v, PLANTED.w, 0.05, 0.02])
    lines = [
        phase_lines(phase, PhaseParameters(lattice, widths, b_shift=b), 0.0, 0.0, LineSettings())
        for b in (0.0, 0.5)
    ]
    d = np.tile(phase.d_spacings(lattice), 2)  # K-alpha1 and K-alpha2 lines
    np.testing.assert_allclose(lines[1].intensity, lines[0].intensity * np.exp(-0.25 / d**2))
    assert np.exp(-0.25 / 1.0**2) == pytest.approx(0.7788, abs=1e-4)
    assert np.exp(-0.25 / 2.0**2) == pytest.approx(0.9394, abs=1e-4)
    problem, theta = truth_problem(mixture_phases, planted_structures, refine_b_shift=True)
    names = [n for n in problem.layout.names if n.endswith(".b_shift")]
    assert names == [f"{i}.b_shift" for i in MIXTURE_IDS]
    for name, error, scale in jacobian_errors(problem, theta, problem.layout.free.copy()):
        assert error <= 0.02 * scale, name


def test_background_order_is_checked():
    with pytest.raises(ValueError, match="background order 7 must be in 0..6"):
        background_basis(np.linspace(10, 80, 100), 7)
