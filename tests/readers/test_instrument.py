"""The instrument read from a scan (``--instrument SCAN``): each lab format's file, as written by
the reader tests' helpers, gives the profile its lines, grid, slit and radius; the rest is kept
from the base profile and named."""

from __future__ import annotations

import numpy as np
import pytest

from tests.readers.test_formats import KA1, KA2, RATIO, XRDML_SLIT, brml, ras, raw_v3
from xrdpipe.config.phase_set import LAB_PROFILE, phase_set_subset, simulation_wavelength
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.readers import read_pattern
from xrdpipe.readers.instrument import profile_from_scan, read_instrument


def _read(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("latin-1"))
    return read_pattern(path)


def test_bruker_raw_v3_gives_lines_grid_slit_and_radius(tmp_path):
    found = read_instrument(_read(tmp_path, "scan.raw", raw_v3()), LAB_PROFILE)
    profile = found.profile
    assert profile.ka_doublet and (profile.ka1, profile.ka2, profile.ka2_ratio) == (KA1, KA2, RATIO)
    assert (profile.two_theta_min, profile.two_theta_max, profile.n_points) == (10.0, 70.0, 3001)
    assert profile.step_deg == pytest.approx(0.02, abs=1e-12)
    assert profile.instrument.goniometer_radius_mm == 250.0
    assert profile.instrument.divergence_slit == "fixed"
    # what no file states stays the base's: every sample effect, and the monochromator
    assert profile.instrument.sample_displacement_mm == (-0.15, 0.15)
    assert profile.crystallite_size_nm == (20.0, 200.0)
    assert found.kept == ("monochromator: none (no reader gives it)",)
    assert "goniometer radius 250 mm" in found.read


def test_brml_radius_not_given_is_kept_and_a_moving_slit_is_automatic(tmp_path):
    fixed = read_instrument(_read(tmp_path, "scan.brml", brml()), LAB_PROFILE)
    assert fixed.profile.instrument.divergence_slit == "fixed"
    assert fixed.profile.instrument.goniometer_radius_mm == 240.0
    assert "goniometer radius 240 mm (the scan does not say)" in fixed.kept
    auto = profile_from_scan(_read(tmp_path, "auto.brml", brml(varying_slit=True)), LAB_PROFILE)
    assert auto.instrument.divergence_slit == "automatic"
    assert (auto.ka1, auto.ka2, auto.ka2_ratio) == (KA1, KA2, RATIO)


def test_rigaku_ras_doublet_or_one_line(tmp_path):
    doublet = profile_from_scan(_read(tmp_path, "a.ras", ras()), LAB_PROFILE)
    assert doublet.ka_doublet and doublet.ka2_ratio == 0.5  # RAS stores no ratio: 0.5 assumed
    assert (doublet.two_theta_min, doublet.two_theta_max, doublet.n_points) == (10.0, 70.0, 3001)
    assert doublet.instrument.divergence_slit == "fixed"  # DS "1/2deg"
    one = profile_from_scan(_read(tmp_path, "b.ras", ras(wave="Ka1")), LAB_PROFILE)
    assert not one.ka_doublet and one.ka1 == KA1
    subset = phase_set_subset(tmp_path, one)  # one line: simulated at that line
    assert subset.simulation.wavelength == KA1
    assert subset.simulation.two_theta_range == (8.0, 72.0)  # 2 degrees beyond the scan


def test_xrdml_radius_automatic_slit_and_a_base_without_instrument(tmp_path):
    counts = " ".join(["5"] * 20)
    extra = '<irradiatedLength unit="mm">10</irradiatedLength>'
    text = XRDML_SLIT.format(slit="programmableDivergenceSlitType", extra=extra, counts=counts)
    pattern = _read(tmp_path, "scan.xrdml", text)
    assert pattern.goniometer_radius_mm == 240.0
    found = read_instrument(pattern, ProfileConfig())
    profile = found.profile
    assert profile.instrument.divergence_slit == "automatic"
    assert profile.instrument.goniometer_radius_mm == 240.0
    assert profile.instrument.widths is None  # a new section: every other effect off
    assert "an instrument section is added to hold them (other effects off)" in found.read
    assert not profile.ka_doublet and profile.ka1 == 1.540598  # kAlpha1 only: one line
    assert (profile.two_theta_min, profile.two_theta_max, profile.n_points) == (10.0, 29.0, 20)


def test_plain_xy_gives_the_range_only(tmp_path):
    two_theta = np.linspace(5.0, 90.0, 851)
    rows = "\n".join(f"{t:.3f} {100 + i % 7}" for i, t in enumerate(two_theta))
    found = read_instrument(_read(tmp_path, "scan.xy", rows), LAB_PROFILE)
    profile = found.profile
    assert (profile.two_theta_min, profile.two_theta_max, profile.n_points) == (5.0, 90.0, 851)
    assert profile.model_dump(exclude={"two_theta_min", "two_theta_max", "n_points"}) == (
        LAB_PROFILE.model_dump(exclude={"two_theta_min", "two_theta_max", "n_points"})
    )
    assert found.kept == (
        "wavelength: K-alpha doublet 1.54056/1.54439 A (the scan gives none)",
        "divergence slit: fixed (the scan does not say)",
        "goniometer radius 240 mm (the scan does not say)",
        "monochromator: none (no reader gives it)",
    )
    assert found.read == ("two-theta 5-90 deg, 851 points (step 0.1 deg)",)


def test_uneven_steps_are_said_and_the_grid_is_uniform(tmp_path):
    two_theta = np.concatenate([np.arange(10.0, 20.0, 0.02), np.arange(20.0, 30.01, 0.05)])
    rows = "\n".join(f"{t:.4f} 10" for t in two_theta)
    found = read_instrument(_read(tmp_path, "uneven.xy", rows), LAB_PROFILE)
    assert found.profile.n_points == two_theta.size
    assert "uneven" in found.read[0]


def test_simulation_wavelength_of_a_doublet_is_its_weighted_mean():
    cobalt = LAB_PROFILE.model_copy(update={"ka1": 1.78897, "ka2": 1.79285, "ka2_ratio": 0.5})
    assert simulation_wavelength(cobalt) == pytest.approx((1.78897 + 0.5 * 1.79285) / 1.5)
    assert simulation_wavelength(LAB_PROFILE) == "CuKa"  # 1.541840 within 1e-4 of pymatgen's
