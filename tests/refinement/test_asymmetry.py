"""The axial-divergence asymmetry (Berar & Baldinozzi): the profile, its derivatives, its fit.

The profile is ``pV(u) A(z)``, ``A = 1 + a F_a(z) + b F_b(z)``, ``z = u / Gamma``,
``F_a = 2 z e^(-z^2)``, ``F_b = (8 z^3 - 12 z) e^(-z^2)``, ``a = P_1 / tan 2theta``,
``b = P_2 / tan 2theta`` (``xrdpipe.refinement.model``). The planted scans are rendered by
the refinement's own model (the engine draws symmetric lines) with Poisson noise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.refinement.conftest import MIXTURE_IDS, jacobian_errors
from xrdpipe.refinement import LineSettings, RefinementOptions, refine
from xrdpipe.refinement.calibration import calibrate, lab6_structure
from xrdpipe.refinement.model import (
    asymmetric_pseudo_voigt_derivatives,
    asymmetry_angle_factor,
    asymmetry_factor,
    hermite_asymmetry,
    pseudo_voigt_area,
)
from xrdpipe.refinement.parameters import ParameterLayout, build_layout
from xrdpipe.refinement.phases import phase_from_structure
from xrdpipe.refinement.problem import Problem


def test_asymmetric_profile_against_a_hand_computed_example():
    """FWHM 0.1 degrees, eta 0.5, a = 0.2, b = -0.05 at u = -0.05, 0, 0.05, 0.1 degrees.

    z = -0.5, 0, 0.5, 1: F_a = -e^(-1/4) = -0.778801, 0, 0.778801, 2/e = 0.735759;
    F_b = 5 e^(-1/4) = 3.894004, 0, -3.894004, -4/e = -1.471518;
    A = 1 + 0.2 F_a - 0.05 F_b = 0.649540, 1, 1.350460, 1.220728.
    pV = (L + G) / 2 with L = (2 / (pi 0.1)) / (1 + 4 z^2) = 3.183099, 6.366198, 3.183099,
    1.273240 and G = (2 sqrt(ln 2 / pi) / 0.1) 2^(-4 z^2) = 4.697186, 9.394373, 4.697186,
    0.587148: pV = 3.940143, 7.880285, 3.940143, 0.930194; pV A = 2.559279, 7.880285,
    5.321006, 1.135513 (the low-angle side lowered, the high-angle side raised: a > 0
    tails to high angles).
    """
    offset = np.array([-0.05, 0.0, 0.05, 0.1])
    fwhm, eta = np.full(4, 0.1), np.full(4, 0.5)
    factor = asymmetry_factor(offset, fwhm, np.full(4, 0.2), np.full(4, -0.05))
    np.testing.assert_allclose(factor, [0.649540, 1.0, 1.350460, 1.220728], atol=2e-6)
    value = pseudo_voigt_area(offset, fwhm, eta) * factor
    np.testing.assert_allclose(value, [2.559279, 7.880285, 5.321006, 1.135513], atol=5e-6)
    fused = pseudo_voigt_area(offset, fwhm, eta, (np.full(4, 0.2), np.full(4, -0.05)))
    np.testing.assert_allclose(fused, value, rtol=1e-14)
    # a = P_1 / tan(2theta): at 2theta = 30 degrees, 1 / tan 30 = sqrt(3)
    assert asymmetry_angle_factor(np.array([30.0]))[0] == pytest.approx(math.sqrt(3), rel=1e-12)
    assert asymmetry_angle_factor(np.array([120.0]))[0] == pytest.approx(-1 / math.sqrt(3))


def test_asymmetry_keeps_the_area_and_moves_the_centroid_to_low_angle():
    offset = np.linspace(-3, 3, 60001)
    step = offset[1] - offset[0]
    fwhm, eta = np.full_like(offset, 0.15), np.full_like(offset, 0.3)
    symmetric = pseudo_voigt_area(offset, fwhm, eta)
    # P_1 = -0.05 at 2theta = 20 degrees: a = -0.137, b = 0.0275
    a, b = -0.05 / math.tan(math.radians(20)), 0.01 / math.tan(math.radians(20))
    asymmetric = symmetric * asymmetry_factor(offset, fwhm, a, b)
    assert asymmetric.sum() * step == pytest.approx(symmetric.sum() * step, rel=1e-12)
    assert (offset @ asymmetric) / asymmetric.sum() < -0.003
    assert asymmetric.min() >= 0


def test_asymmetric_derivatives_match_finite_differences():
    offset = np.linspace(-2, 2, 40001)
    g, eta, a, b = 0.2, 0.4, 0.3, -0.05

    def profile(u, g, eta, a, b):  # the formula without the 4-FWHM cut of the model
        fa, fb, _, _ = hermite_asymmetry(u / g)
        width = np.full_like(u, g)
        return pseudo_voigt_area(u, width, np.full_like(u, eta)) * (1 + a * fa + b * fb)

    analytic = asymmetric_pseudo_voigt_derivatives(offset, g, eta, a, b)
    h = 1e-6
    numeric = [
        -(profile(offset + h, g, eta, a, b) - profile(offset - h, g, eta, a, b)) / (2 * h),
        (profile(offset, g + h, eta, a, b) - profile(offset, g - h, eta, a, b)) / (2 * h),
        (profile(offset, g, eta + h, a, b) - profile(offset, g, eta - h, a, b)) / (2 * h),
        (profile(offset, g, eta, a + h, b) - profile(offset, g, eta, a - h, b)) / (2 * h),
        (profile(offset, g, eta, a, b + h) - profile(offset, g, eta, a, b - h)) / (2 * h),
    ]
    for got, want in zip(analytic, numeric, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6 * np.abs(want).max())


PLANTED_ASYMMETRY = (-0.15, 0.02)
"""P_1, P_2: at 2theta = 28.4 degrees (Si 111) a = -0.28, b = 0.037 (low-angle tails)."""


def rendered(phases, options, theta_values, scales, span=(10.0, 80.0), peak=1e4, background=50.0):
    """Expected counts of the model at ``theta_values`` (by name), step 0.02 degrees."""
    two_theta = np.linspace(*span, round((span[1] - span[0]) / 0.02) + 1)
    layout = build_layout(phases, options)
    theta = layout.values.copy()
    for name, value in theta_values.items():
        theta[layout.names.index(name)] = value
    problem = Problem(
        two_theta, np.ones_like(two_theta), phases, layout, LineSettings(), 3, [None] * len(phases)
    )
    columns = np.stack(
        [problem.phase_column(theta, p, False)[0] for p in range(len(phases))], axis=1
    )
    peaks = columns @ scales
    return two_theta, peak * peaks / peaks.max() + background, problem, theta


PLANTED_VALUES = {
    "zero_shift_deg": 0.02,
    "sample_displacement_mm": 0.05,
    "asymmetry_p1": PLANTED_ASYMMETRY[0],
    "asymmetry_p2": PLANTED_ASYMMETRY[1],
}


def test_jacobian_with_asymmetry_matches_finite_differences(mixture_phases):
    """Kaufman's Jacobian at the truth of an asymmetric scan equals the full one.

    Bound: 2 % of each column's norm, 5 % for the Lorentzian widths X and Y, whose
    derivative tails beyond the 15-FWHM windows hold up to 4 % of the column here (Si's X;
    the same without the asymmetry).
    """
    options = RefinementOptions(widths="per_phase", background_order=3, refine_asymmetry=True)
    two_theta, expected, _, theta = rendered(mixture_phases, options, PLANTED_VALUES, [1, 1, 1])
    layout = build_layout(mixture_phases, options)
    problem = Problem(two_theta, expected, mixture_phases, layout, LineSettings(), 3, [None] * 3)
    for name, error, scale in jacobian_errors(problem, theta, layout.free.copy()):
        bound = 0.05 if name.endswith((".X", ".Y")) else 0.02
        assert error <= bound * scale, name


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_a_planted_asymmetry(seed, mixture_phases):
    """Si held (internal standard), the asymmetry refined from 0; peaks of 1e5 counts.

    Tolerances: P_1 within 0.03 and P_2 within 0.004 (seen, seeds 0-3: <= 0.011 and
    <= 0.0012; esds 0.005 and 0.001), each within 4 esds (seen <= 2.2); a fit without the
    asymmetry leaves chi^2 > 1.4 (seen 1.66-1.70; with it 1.02-1.08). At 1e4 counts the
    same asymmetry is found with esds of 0.017 and 0.003 (chi^2 1.06-1.12 without it).
    """
    options = RefinementOptions(
        background_order=3, fixed_lattice=(MIXTURE_IDS[0],), refine_asymmetry=True
    )
    two_theta, expected, _, _ = rendered(
        mixture_phases, options, PLANTED_VALUES, [1, 1, 1], peak=1e5
    )
    counts = np.random.default_rng(seed).poisson(expected).astype(float)
    result = refine(two_theta, counts, mixture_phases, options=options)
    assert result.chi2 < 1.15
    for value, esd, truth, tolerance in zip(
        result.asymmetry, result.asymmetry_esd, PLANTED_ASYMMETRY, (0.03, 0.004), strict=True
    ):
        assert abs(value - truth) < tolerance
        assert abs(value - truth) < 4 * esd
    assert abs(result.zero_shift_deg - PLANTED_VALUES["zero_shift_deg"]) < 0.005
    symmetric = refine(
        two_theta,
        counts,
        mixture_phases,
        options=RefinementOptions(
            background_order=3, fixed_lattice=(MIXTURE_IDS[0],), refine_asymmetry=False
        ),
    )
    assert symmetric.asymmetry == (0.0, 0.0)
    assert np.isnan(symmetric.asymmetry_esd).all()
    assert symmetric.chi2 > 1.4
    assert symmetric.parameter_values[list(ParameterLayout.ASYMMETRY)].tolist() == [0.0, 0.0]


def test_calibration_returns_the_asymmetry_as_a_start():
    """A LaB6 scan rendered with the asymmetry: the calibration finds it and passes it on."""
    phase = phase_from_structure(lab6_structure(), "standard", (15.0, 120.0))
    options = RefinementOptions(widths="shared", fixed_lattice=("standard",))
    two_theta, expected, _, _ = rendered(
        [phase], options, PLANTED_VALUES, [1.0], span=(15.0, 120.0)
    )
    counts = np.random.default_rng(0).poisson(expected).astype(float)
    calibration = calibrate(two_theta, counts)
    assert abs(calibration.asymmetry[0] - PLANTED_ASYMMETRY[0]) < 0.03
    assert abs(calibration.asymmetry[1] - PLANTED_ASYMMETRY[1]) < 0.004
    assert calibration.esd["asymmetry_p1"] > 0
    assert calibration.start()["asymmetry"] == calibration.asymmetry
