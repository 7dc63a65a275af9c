"""Calibration on a LaB6 scan rendered by the engine recovers the planted instrument.

Planted: zero -0.04 degrees, displacement 0.10 mm, U 0.006, V -0.003, W 0.004 deg^2,
X 0.02, Y 0.03 degrees; 15-120 degrees, step 0.02, 3e4 counts. Tolerances (3 seeds seen:
zero 0.0013, displacement 0.003 mm, FWHM 1.3 %): zero 0.005 degrees and displacement
0.01 mm, the precision a lab needs (0.005 degrees is a quarter of a 0.02 degree step;
0.01 mm moves a peak by < 0.005 degrees); the FWHM curve within 3 % over 20-110 degrees
(U, V and W individually are correlated, the curve is what the engine uses).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.refinement.engine_scan import Planted, engine_scan
from xrdpipe.patterns.config import InstrumentConfig
from xrdpipe.refinement.calibration import LAB6_CERTIFIED_A, calibrate, lab6_structure
from xrdpipe.refinement.model import line_widths

TRUE_WIDTHS = np.array([0.006, -0.003, 0.004, 0.02, 0.03])


@pytest.fixture(scope="module")
def lab6_scan():
    planted = Planted(
        weight_fractions=[1.0],
        zero_shift_deg=-0.04,
        sample_displacement_mm=0.1,
        u=0.006,
        v=-0.003,
        w=0.004,
        x=[0.02],
        y=[0.03],
        max_counts=3e4,
        two_theta_range=(15.0, 120.0),
        n_points=5251,
    )
    return engine_scan([lab6_structure()], planted)


def test_shipped_lab6_is_the_standard():
    structure = lab6_structure()
    assert structure.composition.reduced_formula == "LaB6"
    assert structure.lattice.abc == pytest.approx((LAB6_CERTIFIED_A,) * 3)
    assert len(structure) == 7


def test_calibration_recovers_the_planted_instrument(lab6_scan):
    calibration = calibrate(*lab6_scan)
    assert calibration.refinement.chi2 < 1.15
    assert calibration.zero_shift_deg == pytest.approx(-0.04, abs=0.005)
    assert calibration.sample_displacement_mm == pytest.approx(0.10, abs=0.01)
    angles = np.linspace(20, 110, 10)
    fitted = line_widths(angles, np.array(list(calibration.widths.values())))[0]
    truth = line_widths(angles, TRUE_WIDTHS)[0]
    np.testing.assert_allclose(fitted, truth, rtol=0.03)
    assert calibration.widths["W"] == pytest.approx(0.004, rel=0.1)
    # the cell was held: no esd
    assert np.isnan(calibration.refinement.phases[0].lattice_esd["a"])

    profile = calibration.profile_config()
    assert profile.zero_shift_deg == (calibration.zero_shift_deg,) * 2
    inst = profile.instrument
    assert isinstance(inst, InstrumentConfig)
    assert inst.sample_displacement_mm == (calibration.sample_displacement_mm,) * 2
    assert inst.widths.caglioti_w_deg2 == (calibration.widths["W"],) * 2
    assert calibration.fields()["lorentz_y_deg"] == calibration.widths["Y"]
    assert calibration.start()["widths"] == tuple(calibration.widths.values())


def test_a_wrong_certified_cell_shows(lab6_scan):
    """Held at a cell 0.05 % off, the fit is visibly worse (the cell is what calibrates)."""
    good = calibrate(*lab6_scan)
    off = calibrate(*lab6_scan, certified_cell=LAB6_CERTIFIED_A * 1.0005)
    assert (
        off.refinement.chi2 > 1.2 * good.refinement.chi2
        or abs(off.zero_shift_deg - good.zero_shift_deg) > 0.01
    )
