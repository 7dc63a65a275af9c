"""The phase search: screening candidates, pinned cells, correlated residuals.

Scans: the engine's Si + VO2 (+ brucite) with planted cells (``test_fit.scan``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.refinement.conftest import MIXTURE_IDS
from tests.refinement.test_fit import OPTIONS, scan
from xrdpipe.refinement import RefinementOptions, polish, refine
from xrdpipe.refinement.fit import _problem
from xrdpipe.refinement.model import LineSettings
from xrdpipe.refinement.parameters import DEFAULT_WIDTHS, build_layout
from xrdpipe.refinement.search import (
    candidate_parameters,
    fitted_gains,
    pinned,
    screen_candidates,
)
from xrdpipe.refinement.solution import serial_correlation_factor

START = {"zero_shift_deg": 0.0, "sample_displacement_mm": 0.0, "widths": DEFAULT_WIDTHS}


def test_serial_correlation_factor_by_hand_and_on_series():
    # [1, 1, -1, -1]: mean 0, sum r^2 = 4, lag-one sum 1 - 1 + 1 = 1, rho = 0.25,
    # c = 1.25 / 0.75
    assert serial_correlation_factor(np.array([1.0, 1.0, -1.0, -1.0])) == pytest.approx(5 / 3)
    rng = np.random.default_rng(0)
    assert serial_correlation_factor(rng.normal(size=20_000)) == pytest.approx(1.0, abs=0.03)
    # AR(1) with rho = 0.6: c = 1.6 / 0.4 = 4
    e = rng.normal(size=50_000)
    ar = np.empty_like(e)
    ar[0] = e[0]
    for i in range(1, len(e)):
        ar[i] = 0.6 * ar[i - 1] + e[i]
    assert serial_correlation_factor(ar) == pytest.approx(4.0, rel=0.05)
    # alternating residuals are not "less than independent"
    assert serial_correlation_factor(np.tile([1.0, -1.0], 50)) == 1.0


def test_screen_finds_the_missing_phase_and_not_the_absent_one(mixture_phases, planted_structures):
    """Si + VO2 scanned; a fit of Si alone: VO2 passes its penalty, brucite does not."""
    two_theta, counts = scan(planted_structures[:2], weights=(0.6, 0.4))
    si, vo2, brucite = mixture_phases
    fit = refine(two_theta, counts, [si], options=replace(OPTIONS, select_phases=False))
    values = dict(zip(fit.parameter_names, fit.parameter_values.tolist(), strict=True))
    problem, theta = _problem(two_theta, counts, [si], LineSettings(), OPTIONS, START, None, values)
    screens = screen_candidates(
        two_theta, counts, [brucite, vo2], LineSettings(), OPTIONS, problem=problem, theta=theta
    )
    assert [s.name for s in screens] == [MIXTURE_IDS[1], MIXTURE_IDS[2]]
    assert screens[0].significant and screens[0].gain > 10 * screens[0].penalty
    assert not screens[1].significant
    # penalty: scale + a, c + own X, Y = 5 parameters, times ln(number of points)
    assert candidate_parameters(vo2, OPTIONS) == 5
    assert screens[0].penalty == pytest.approx(5 * np.log(len(two_theta)))
    # the planted VO2 cell is -0.3 % (a) / +0.2 % (c): the screen's isotropic step is near
    assert -0.004 <= screens[0].cell_scale <= 0.003


def test_search_from_a_wrong_start_ends_on_the_right_set(mixture_phases, planted_structures):
    """Started from brucite only (absent), the search adds Si and VO2 and drops brucite."""
    two_theta, counts = scan(planted_structures[:2], weights=(0.6, 0.4))
    result = refine(
        two_theta, counts, mixture_phases, options=OPTIONS, start_phases=[MIXTURE_IDS[2]]
    )
    assert result.dropped == (MIXTURE_IDS[2],)
    assert result.phase(MIXTURE_IDS[0]).weight_fraction == pytest.approx(0.6, abs=0.01)
    # a polish whose given answer missed VO2 (0.5 wt%) gets it back
    given = {MIXTURE_IDS[0]: 0.985, MIXTURE_IDS[1]: 0.005, MIXTURE_IDS[2]: 0.01}
    out = polish(two_theta, counts, mixture_phases, given, options=OPTIONS)
    assert out.kept == MIXTURE_IDS[:2]
    assert out.refinement.phase(MIXTURE_IDS[1]).weight_fraction == pytest.approx(0.4, abs=0.01)
    assert out.started == (MIXTURE_IDS[0], MIXTURE_IDS[2])  # brucite given 1 wt%: started
    # under its floor (say a detection limit of 2 wt%) the given brucite is not started
    floored = polish(
        two_theta, counts, mixture_phases, given, options=OPTIONS, floors={MIXTURE_IDS[2]: 0.02}
    )
    assert floored.started == (MIXTURE_IDS[0],)
    assert floored.kept == MIXTURE_IDS[:2]
    with pytest.raises(ValueError, match="start_phases names"):
        refine(two_theta, counts, mixture_phases, start_phases=["quartz"])


def test_pinned_cell(mixture_phases):
    layout = build_layout(mixture_phases, RefinementOptions())
    theta = layout.values.copy()
    assert not any(pinned(layout, theta, p) for p in range(3))
    a_vo2 = layout.phase_lattice[1][0]
    theta[a_vo2] = layout.upper[a_vo2]
    assert pinned(layout, theta, 1) and not pinned(layout, theta, 0)
    widths = layout.phase_widths[2]
    theta[widths[3]] = layout.upper[widths[3]]  # a width on its bound is not "pinned"
    assert not pinned(layout, theta, 2)
    assert layout.upper[widths[3]] == RefinementOptions().max_sample_width_deg == 0.5


def test_fitted_gains_find_the_phase_the_scan_does_not_hold(mixture_phases, planted_structures):
    """Si + VO2 scanned, all three fitted: brucite fails the backward test, the others pass."""
    two_theta, counts = scan(planted_structures[:2], weights=(0.6, 0.4))
    fit = refine(two_theta, counts, mixture_phases, options=replace(OPTIONS, select_phases=False))
    values = dict(zip(fit.parameter_names, fit.parameter_values.tolist(), strict=True))
    problem, theta = _problem(
        two_theta, counts, mixture_phases, LineSettings(), OPTIONS, START, None, values
    )
    gains = {g.name: g for g in fitted_gains(problem, theta, OPTIONS)}
    assert gains[MIXTURE_IDS[0]].gain > 100 * gains[MIXTURE_IDS[0]].penalty
    assert gains[MIXTURE_IDS[1]].gain > 100 * gains[MIXTURE_IDS[1]].penalty
    assert not gains[MIXTURE_IDS[2]].significant
