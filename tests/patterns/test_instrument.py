"""The engine's instrument model against formulas and hand-computed values.

Displacement and zero shift move rendered peak centroids by the formula's amount; TCH widths
against numbers worked out by hand; March-Dollase against averages over explicitly listed
family members; the Chebyshev background against numpy; Poisson counts' mean and variance;
the K-alpha doublet's areas and Bragg positions; the sampler end to end.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from xrdpipe.errors import ConfigError
from xrdpipe.patterns import MixtureConfig, MixtureSampler, PeakArrays, ProfileConfig
from xrdpipe.patterns.config import (
    AmorphousHumpConfig,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    MarchDollaseConfig,
    TCHWidthConfig,
    grid_points,
)
from xrdpipe.patterns.datasets import load_peaks
from xrdpipe.patterns.instrument import counting_noise, draw_instrument, instrument_background
from xrdpipe.patterns.orientation import (
    axis_projections,
    inverse_reciprocal_norms,
    low_index_axes,
    march_dollase_peak_factors,
    orientation_tables,
)
from xrdpipe.patterns.physics import (
    automatic_slit_factor,
    automatic_to_fixed_slit,
    caglioti_gaussian_fwhm_deg,
    displacement_shift_deg,
    lorentzian_fwhm_deg,
    march_dollase_factor,
    monochromator_polarisation_ratio,
    tch_fwhm_eta,
)
from xrdpipe.patterns.render import render_naive, render_peaks, render_profiles

CU_KA1 = 1.54056
FINE = dict(two_theta_min=30.0, two_theta_max=50.0, n_points=4001)  # 0.005 degree steps
NARROW = TCHWidthConfig(
    caglioti_u_deg2=(0.0, 0.0),
    caglioti_v_deg2=(0.0, 0.0),
    caglioti_w_deg2=(0.0025, 0.0025),  # G = 0.05 degrees everywhere
    lorentz_x_deg=(0.0, 0.0),
    lorentz_y_deg=(0.0, 0.0),
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid(cfg: ProfileConfig) -> np.ndarray:
    return np.linspace(cfg.two_theta_min, cfg.two_theta_max, cfg.n_points)


def _two_peaks(
    cfg: ProfileConfig, two_theta: tuple[float, float], intensity: tuple[float, float], **kw
) -> np.ndarray:
    """One pattern of two sticks rendered without noise or background, float64."""
    y = render_profiles(
        np.array([two_theta]),
        np.array([intensity]),
        np.ones((1, 2), bool),
        cfg,
        _gen(),
        noise=False,
        background=False,
        **kw,
    )
    return y[0].double().numpy()


def _centroid(cfg: ProfileConfig, y: np.ndarray, around: float, half: float = 0.5) -> float:
    grid = _grid(cfg)
    keep = np.abs(grid - around) <= half
    return float((grid[keep] * y[keep]).sum() / y[keep].sum())


def _one_peak(cfg: ProfileConfig, two_theta: float, seed: int = 0) -> np.ndarray:
    d = CU_KA1 / (2 * math.sin(math.radians(two_theta / 2)))
    y = render_profiles(
        np.array([[two_theta]]),
        np.array([[1.0]]),
        np.array([[True]]),
        cfg,
        _gen(seed),
        "cpu",
        CU_KA1,
        d_spacing=np.array([[d]]),
        noise=False,
        background=False,
    )
    return y[0].double().numpy()


# ---------------------------------------------------------------- positions


def test_displacement_formula_hand_value() -> None:
    # s = 0.2 mm, R = 240 mm, 2theta = 40: -2 * 0.2 * cos(20 deg) / 240 rad = -0.089734 deg
    assert displacement_shift_deg(40.0, 0.2, 240.0) == pytest.approx(-0.089734, abs=1e-6)
    assert displacement_shift_deg(40.0, -0.2, 240.0) == pytest.approx(0.089734, abs=1e-6)
    assert displacement_shift_deg(np.array([0.0]), 0.24, 240.0)[0] == pytest.approx(
        -math.degrees(0.002)
    )


@pytest.mark.parametrize("grid", [FINE, {}], ids=["step-0.005", "default-step-0.0156"])
@pytest.mark.parametrize("displacement_mm", [0.2, -0.35])
def test_planted_displacement_moves_the_peak_by_the_formula(
    displacement_mm: float, grid: dict
) -> None:
    radius = 240.0
    inst = InstrumentConfig(
        goniometer_radius_mm=radius,
        sample_displacement_mm=(displacement_mm, displacement_mm),
        widths=NARROW,
    )
    cfg = ProfileConfig(**grid, instrument=inst)
    expected = -2 * displacement_mm * math.cos(math.radians(20.0)) / radius
    y = _one_peak(cfg, 40.0)
    assert _centroid(cfg, y, 40.0) == pytest.approx(40.0 + math.degrees(expected), abs=0.002)
    # and against the same peak without displacement
    still = ProfileConfig(**grid, instrument=InstrumentConfig(widths=NARROW))
    moved = _centroid(cfg, y, 40.0) - _centroid(still, _one_peak(still, 40.0), 40.0)
    assert moved == pytest.approx(math.degrees(expected), abs=0.002)
    assert math.copysign(1, moved) == -math.copysign(1, displacement_mm)  # s > 0: lower 2theta


def test_zero_shift_between_grid_points_and_exact_centres() -> None:
    # 0.0137 degrees is 2.74 steps of 0.005: exact centres keep the fraction
    cfg = ProfileConfig(**FINE, zero_shift_deg=(0.0137, 0.0137), instrument=InstrumentConfig())
    assert _centroid(cfg, _one_peak(cfg, 40.0), 40.0) == pytest.approx(40.0137, abs=0.002)
    off_grid = 40.0 + 0.4 * 0.005
    plain = ProfileConfig(**FINE, instrument=InstrumentConfig(widths=NARROW))
    assert _centroid(plain, _one_peak(plain, off_grid), 40.0) == pytest.approx(off_grid, abs=2e-4)


@pytest.mark.parametrize("fwhm_range", [(0.03, 0.1), (0.05, 1.0), (0.5, 3.0)])
def test_exact_centre_renderer_matches_naive_reference(fwhm_range: tuple[float, float]) -> None:
    """Windows + split far-tail sticks vs every peak on the whole grid, unrounded, float64."""
    rng = np.random.default_rng(int(fwhm_range[1] * 100))
    cfg = ProfileConfig()
    tt = rng.uniform(10.0, 80.0, (4, 300))
    inten = rng.lognormal(2.0, 1.5, tt.shape)
    mask = rng.random(tt.shape) < 0.95
    eta = rng.uniform(0.0, 1.0, tt.shape)
    fwhm = rng.uniform(*fwhm_range, tt.shape)
    ref = render_naive(tt, inten, mask, eta, 1.0, cfg, fwhm_deg=fwhm, exact_centres=True)
    out = render_peaks(
        *(torch.tensor(v, dtype=torch.float32) for v in (tt, inten)),
        torch.tensor(mask),
        torch.tensor(eta, dtype=torch.float32),
        torch.tensor(1.0),
        cfg,
        fwhm_deg=torch.tensor(fwhm, dtype=torch.float32),
        exact_centres=True,
    )
    err = (out.double().numpy() - ref) / ref.max(axis=1, keepdims=True)
    assert np.abs(err).max() < 1e-3  # measured <= 2.2e-4
    assert np.sqrt((err**2).mean(axis=1)).max() < 1e-4  # measured <= 2e-5


# ---------------------------------------------------------------- widths


def test_tch_widths_against_hand_values() -> None:
    # G = 0.1, L = 0.05: Gamma^5 = 1e-5 + 2.69269e-4*0.05 + 2.42843e-3*0.0025
    #   + 4.47163e-2*1.25e-4 + 0.07842*0.1*6.25e-6 + 3.125e-7 = 3.5485575e-5
    # Gamma = 0.128828; q = 0.05/0.128828 = 0.388114; eta = 0.464794
    gamma, eta = tch_fwhm_eta(np.array(0.1), np.array(0.05))
    assert float(gamma) == pytest.approx(0.1288280, abs=1e-6)
    assert float(eta) == pytest.approx(0.4647941, abs=1e-6)
    gamma, eta = tch_fwhm_eta(torch.tensor(0.03, dtype=torch.float64), torch.tensor(0.12))
    assert float(gamma) == pytest.approx(0.1273951, abs=1e-6)
    assert float(eta) == pytest.approx(0.9562402, abs=1e-6)
    # limits: pure Gaussian and pure Lorentzian (1.36603 - 0.47719 + 0.11116 = 1.0000)
    gamma, eta = tch_fwhm_eta(np.array([0.2, 0.0]), np.array([0.0, 0.2]))
    np.testing.assert_allclose(gamma, [0.2, 0.2], rtol=1e-12)
    np.testing.assert_allclose(eta, [0.0, 1.0], atol=1e-12)
    # Caglioti at 2theta = 60 (tan 30 = 0.577350): U 0.01, V -0.005, W 0.004 ->
    # sqrt(0.0033333 - 0.0028868 + 0.004) = 0.0666827; X 0.02, Y 0.03 -> 0.023094 + 0.017321
    assert caglioti_gaussian_fwhm_deg(60.0, 0.01, -0.005, 0.004) == pytest.approx(0.0666827, 1e-6)
    assert lorentzian_fwhm_deg(60.0, 0.02, 0.03) == pytest.approx(0.0404145, abs=1e-6)


def test_rendered_tch_peak_has_the_tch_fwhm() -> None:
    tch = TCHWidthConfig(
        caglioti_u_deg2=(0.0, 0.0),
        caglioti_v_deg2=(0.0, 0.0),
        caglioti_w_deg2=(0.01, 0.01),  # G = 0.1
        lorentz_x_deg=(0.05 * math.cos(math.radians(20.0)),) * 2,  # L = 0.05 at 40 degrees
        lorentz_y_deg=(0.0, 0.0),
    )
    cfg = ProfileConfig(**FINE, instrument=InstrumentConfig(widths=tch))
    y = _one_peak(cfg, 40.0)
    grid = _grid(cfg)
    above = np.nonzero(y >= 0.5 * y.max())[0]
    i, j = above[0], above[-1]
    left = np.interp(0.5 * y.max(), [y[i - 1], y[i]], [grid[i - 1], grid[i]])
    right = np.interp(0.5 * y.max(), [y[j + 1], y[j]], [grid[j + 1], grid[j]])
    assert right - left == pytest.approx(0.1288280, rel=0.005)


# ---------------------------------------------------------------- March-Dollase


def _members(hkl: tuple[int, int, int]) -> set[tuple[int, ...]]:
    """Every signed permutation of a cubic hkl: the family {hkl} of m-3m, listed explicitly."""
    out = set()
    for perm in itertools.permutations(hkl):
        for signs in itertools.product((1, -1), repeat=3):
            out.add(tuple(s * v for s, v in zip(signs, perm, strict=True)))
    return out


def _by_hand(hkl: tuple[int, int, int], axis: np.ndarray, r: float) -> float:
    """Mean March-Dollase weight over the explicit members (cubic: Cartesian along hkl)."""
    unit = axis / np.linalg.norm(axis)
    values = []
    for member in _members(hkl):
        cos = np.dot(member, unit) / np.linalg.norm(member)
        values.append((r**2 * cos**2 + (1 - cos**2) / r) ** -1.5)
    return float(np.mean(values))


@pytest.fixture(scope="module")
def nacl_and_mg():
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    mg = Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]
    )
    return nacl, mg


def _factors(structure, hkl, axis, r: float) -> np.ndarray:
    rotations, basis = orientation_tables([structure])
    rot, b = torch.as_tensor(rotations), torch.as_tensor(basis)
    h = torch.as_tensor(np.asarray(hkl, dtype=np.float64))[None, None]  # (1, 1, P, 3)
    inverse = inverse_reciprocal_norms(h, b)[0, 0]
    proj = axis_projections(rot, b, torch.as_tensor([axis]))[0, 0]  # (L, 3)
    return march_dollase_peak_factors(h[0, 0], inverse, proj, torch.tensor(r, dtype=rot.dtype))


def test_march_dollase_cubic_family_by_hand(nacl_and_mg) -> None:
    nacl, _ = nacl_and_mg
    r = 0.7
    factors = _factors(nacl, [(2, 0, 0), (1, 1, 1), (2, 2, 0)], (0, 0, 1), r).numpy()
    # {200} with axis [001]: four members at 90 degrees, two at 0 degrees:
    # (4 r^1.5 + 2 r^-3) / 6 = (4 * 0.585662 + 2 * 2.915452) / 6 = 1.362259
    assert factors[0] == pytest.approx(1.362259, abs=1e-6)
    assert factors[0] == pytest.approx(_by_hand((2, 0, 0), np.array([0, 0, 1.0]), r), abs=1e-6)
    # {111}: all eight members at cos^2 = 1/3
    assert factors[1] == pytest.approx((r**2 / 3 + 2 / (3 * r)) ** -1.5, abs=1e-6)
    assert factors[2] == pytest.approx(_by_hand((2, 2, 0), np.array([0, 0, 1.0]), r), abs=1e-6)
    # every low-index axis, a needle ratio as well
    for axis in low_index_axes(1):
        got = _factors(nacl, [(3, 1, 1)], tuple(axis), 1.6).numpy()[0]
        assert got == pytest.approx(_by_hand((3, 1, 1), axis.astype(float), 1.6), abs=1e-6)


def test_march_dollase_hexagonal_family_by_hand(nacl_and_mg) -> None:
    _, mg = nacl_and_mg
    r = 0.5
    # {100} of a hexagonal cell: six members in the basal plane, 60 degrees apart.
    # Axis [001] (c*): all at 90 degrees -> r^1.5. Axis [100] (a*): cos^2 = 1 for +-(100)
    # and 1/4 for the four others -> (2 P(1) + 4 P(1/4)) / 6.
    assert _factors(mg, [(1, 0, 0)], (0, 0, 1), r).item() == pytest.approx(r**1.5, abs=1e-6)
    by_hand = (2 * r**-3 + 4 * (r**2 / 4 + 0.75 / r) ** -1.5) / 6
    assert _factors(mg, [(1, 0, 0)], (1, 0, 0), r).item() == pytest.approx(by_hand, abs=1e-6)


def test_march_dollase_ratio_one_is_neutral() -> None:
    cos = torch.linspace(-1, 1, 101)
    assert torch.allclose(march_dollase_factor(cos, torch.tensor(1.0)), torch.ones(101))
    # platelets: r < 1 boosts reflections along the axis and weakens those across it
    assert float(march_dollase_factor(torch.tensor(1.0), torch.tensor(0.6))) > 1.0
    assert float(march_dollase_factor(torch.tensor(0.0), torch.tensor(0.6))) < 1.0


def _cubic_pool(structure, n_materials: int = 2) -> PeakArrays:
    hkls = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2), (4, 0, 0), (3, 3, 1)]
    a = structure.lattice.a
    d = np.array([a / math.sqrt(sum(v * v for v in h)) for h in hkls])
    tt = np.degrees(2 * np.arcsin(1.54184 / (2 * d)))
    shape = (n_materials, 1, len(hkls))
    rotations, basis = orientation_tables([structure] * n_materials)
    return PeakArrays.from_arrays(
        np.broadcast_to(tt, shape),
        np.broadcast_to(np.linspace(100, 10, len(hkls)), shape),
        np.ones(shape, bool),
        d_spacing=np.broadcast_to(d, shape),
        hkl=np.broadcast_to(np.array(hkls), (*shape, 3)),
        rotations=rotations,
        reciprocal_basis=basis,
    )


def test_sampler_march_dollase_scales_each_family_as_drawn(nacl_and_mg) -> None:
    nacl, _ = nacl_and_mg
    peaks = _cubic_pool(nacl)
    mix = MixtureConfig(n_materials=2, max_phases=2, batch_size=16)
    neutral = MarchDollaseConfig(ratio=(1.0, 1.0))
    textured = MarchDollaseConfig(ratio=(0.5, 1.5))

    def draw(po):
        cfg = ProfileConfig(instrument=InstrumentConfig(preferred_orientation=po))
        return MixtureSampler(peaks, mix, cfg, seed=3, device="cpu").draw()

    plain, flat, tex = draw(None), draw(neutral), draw(textured)
    # r = 1: intensities unchanged to 1e-6 (same seed: the same phases and fractions)
    torch.testing.assert_close(flat.intensity, plain.intensity, rtol=1e-6, atol=0)
    hkls = peaks.hkl[0, 0].numpy().astype(int)
    n_peaks = len(hkls)
    ratio = tex.intensity.view(16, 2, n_peaks) / plain.intensity.view(16, 2, n_peaks)
    for b, k in itertools.product(range(16), range(2)):
        if not bool(tex.extras["phase_mask"][b, k]):
            continue
        r = float(tex.extras["march_dollase_ratio"][b, k])
        axis = tex.extras["march_dollase_axis_hkl"][b, k].numpy().astype(float)
        for p, hkl in enumerate(hkls):
            expected = _by_hand(tuple(hkl), axis, r)
            assert float(ratio[b, k, p]) == pytest.approx(expected, rel=1e-5)


def test_march_dollase_needs_orientation_arrays(nacl_and_mg) -> None:
    peaks = _cubic_pool(nacl_and_mg[0])
    bare = PeakArrays.from_arrays(peaks.two_theta, peaks.intensity, peaks.peak_mask)
    cfg = ProfileConfig(instrument=InstrumentConfig(preferred_orientation=MarchDollaseConfig()))
    with pytest.raises(ConfigError, match="orientation=True"):
        MixtureSampler(bare, MixtureConfig(n_materials=2, max_phases=2), cfg, device="cpu")


def test_store_orientation_tables_map_reflections_onto_reflections(tiny_store_built: Path) -> None:
    loaded = load_peaks(tiny_store_built / "patterns.zarr", "reference", orientation=True)
    pk = loaded.peaks
    assert pk.has_orientation and pk.rotations.shape[1:] == (24, 3, 3)
    basis, hkl = pk.reciprocal_basis.double(), pk.hkl.double()
    mask = pk.peak_mask
    # unstrained reference: 1 / |B h| is the stored d-spacing
    inverse = inverse_reciprocal_norms(hkl, basis)
    torch.testing.assert_close(inverse[mask], pk.d_spacing.double()[mask], rtol=1e-6, atol=0)
    # every rotated reflection Q B h is again a reciprocal-lattice point B h' (h' integer),
    # so the rotations are the crystal's (for every material: cubic to monoclinic)
    turned = torch.einsum("mgij,mjk,mspk->mspgi", pk.rotations.double(), basis, hkl)
    members = torch.einsum("mij,mspgj->mspgi", torch.linalg.inv(basis), turned)
    assert float((members - members.round())[mask].abs().max()) < 0.02
    assert loaded.materials["crystal_system"].nunique() >= 3


# ---------------------------------------------------------------- intensities


def test_monochromator_and_slit_factors_hand_values() -> None:
    # graphite 002 at Cu K-alpha: 2theta_m = 26.57, cos^2 = 0.800; at 2theta = 90 the
    # ratio is (1 / 1.8) / (1 / 2) = 1.111154; at 2theta = 0 it is 1
    ratio = monochromator_polarisation_ratio(np.array([90.0, 0.0]), 26.57)
    np.testing.assert_allclose(ratio, [1.1111538, 1.0], atol=1e-6)
    assert monochromator_polarisation_ratio(50.0, 0.0) == pytest.approx(1.0)
    assert automatic_slit_factor(60.0) == pytest.approx(0.5)
    assert automatic_to_fixed_slit(3.0, 60.0) == pytest.approx(6.0)


def test_slit_and_monochromator_reweight_rendered_peaks() -> None:
    def areas(**instrument) -> tuple[float, float]:
        inst = InstrumentConfig(widths=NARROW, **instrument)
        cfg = ProfileConfig(two_theta_min=20.0, two_theta_max=100.0, n_points=8001, instrument=inst)
        y = _two_peaks(cfg, (30.0, 90.0), (1.0, 1.0))
        grid = _grid(cfg)
        return tuple(float(y[np.abs(grid - t) < 1.0].sum()) for t in (30.0, 90.0))

    fixed = areas()
    assert fixed[1] / fixed[0] == pytest.approx(1.0, rel=1e-3)
    auto = areas(divergence_slit="automatic")  # sin(45) / sin(15) = 2.732051
    assert auto[1] / auto[0] == pytest.approx(2.732051, rel=1e-3)
    mono = areas(monochromator_two_theta_deg=26.57)
    # cos^2(2theta_m) = 0.8; at 90: 1.111154; at 30 (cos^2 30 = 0.75):
    # (1 + 0.8 * 0.75) / 1.8 / ((1 + 0.75) / 2) = 1.015873
    assert mono[1] / mono[0] == pytest.approx(1.111154 / 1.015873, rel=1e-3)


def test_ka_doublet_keeps_area_and_puts_ka2_where_bragg_says() -> None:
    cfg = ProfileConfig(
        two_theta_min=60.0,
        two_theta_max=80.0,
        n_points=4001,
        ka_doublet=True,
        instrument=InstrumentConfig(widths=NARROW),
    )
    d = np.array([[CU_KA1 / (2 * math.sin(math.radians(t / 2))) for t in (65.0, 75.0)]])
    y = _two_peaks(cfg, (65.0, 75.0), (1.0, 3.0), d_spacing=d)
    grid = _grid(cfg)
    ka2 = [2 * math.degrees(math.asin(1.54439 / (2 * v))) for v in d[0]]
    areas = []
    for t1, t2 in zip((65.0, 75.0), ka2, strict=True):
        mid = (t1 + t2) / 2
        one = (grid > t1 - 0.5) & (grid < mid)
        two = (grid >= mid) & (grid < t2 + 0.5)
        assert _centroid(cfg, np.where(one, y, 0), t1) == pytest.approx(t1, abs=0.002)
        assert _centroid(cfg, np.where(two, y, 0), t2) == pytest.approx(t2, abs=0.002)
        areas.append((y[one].sum(), y[two].sum()))
    for a1, a2 in areas:
        assert a2 / a1 == pytest.approx(0.5, rel=0.01)  # ka2_ratio
    assert sum(areas[1]) / sum(areas[0]) == pytest.approx(3.0, rel=0.01)  # stick areas kept


# ---------------------------------------------------------------- background and noise


def test_chebyshev_background_equals_numpy() -> None:
    cheb = ChebyshevBackgroundConfig(order=6, constant=(0.5, 0.8), coefficient=(-0.05, 0.05))
    cfg = ProfileConfig(
        background_amplitude=(0.0, 0.0),
        instrument=InstrumentConfig(chebyshev_background=cheb),
    )
    draws = draw_instrument(cfg, 5, 1, _gen(4), "cpu")
    background = instrument_background(cfg, draws, "cpu").double().numpy()
    grid = _grid(cfg)
    x = 2 * (grid - 10.0) / 70.0 - 1
    for b in range(5):
        coefficients = draws["chebyshev_coefficients"][b].double().numpy()
        assert 0.5 <= coefficients[0] <= 0.8
        reference = np.polynomial.chebyshev.chebval(x, coefficients)
        np.testing.assert_allclose(background[b], reference, atol=2e-6)


def test_hump_is_a_pseudo_voigt_of_the_drawn_height() -> None:
    hump = AmorphousHumpConfig(height=(0.3, 0.3), center_deg=(25.0, 25.0), fwhm_deg=(10.0, 10.0))
    cfg = ProfileConfig(
        background_amplitude=(0.0, 0.0), instrument=InstrumentConfig(amorphous_hump=hump)
    )
    background = instrument_background(cfg, draw_instrument(cfg, 1, 1, _gen(), "cpu"), "cpu")[0]
    grid = _grid(cfg)
    assert float(background.max()) == pytest.approx(0.3, abs=1e-4)
    assert grid[int(background.argmax())] == pytest.approx(25.0, abs=cfg.step_deg)
    half = grid[background.numpy() >= 0.15]
    assert half[-1] - half[0] == pytest.approx(10.0, abs=2 * cfg.step_deg)


@pytest.mark.parametrize("level", [20.0, 1000.0])
def test_poisson_noise_mean_and_variance_at_the_planted_level(level: float) -> None:
    expected = torch.ones(64, 4501)
    counts = counting_noise(expected, torch.full((64,), level), _gen(7))
    assert torch.equal(counts, counts.round())
    n = counts.numel()
    assert float(counts.mean()) == pytest.approx(level, abs=4 * math.sqrt(level / n))
    assert float(counts.var()) == pytest.approx(level, rel=0.02)


# ---------------------------------------------------------------- config and sampler


def test_defaults_are_neutral_and_bad_values_are_named() -> None:
    assert ProfileConfig().instrument is None
    inst = InstrumentConfig()
    assert inst.sample_displacement_mm == (0.0, 0.0) and inst.widths is None
    assert inst.preferred_orientation is None and inst.counting_noise is None
    with pytest.raises(ValidationError, match="sample_displacement_mm"):
        InstrumentConfig(sample_displacement_mm=(0.5, -0.5))
    with pytest.raises(ValidationError, match="max_counts"):
        CountingNoiseConfig(max_counts=(0.0, 10.0))
    with pytest.raises(ValidationError, match="order"):
        ChebyshevBackgroundConfig(order=7)
    with pytest.raises(ValidationError, match="divergence_slit"):
        InstrumentConfig(divergence_slit="variable")
    assert grid_points(10.0, 80.0, 0.02) == 3501
    with pytest.raises(ValueError, match="step_deg"):
        grid_points(10.0, 80.0, 0.03)


def test_absent_instrument_keeps_old_dumps_and_the_docs_example_validates() -> None:
    # dumps (subset fingerprints, fixed-set keys, checkpoints) as before the instrument model
    assert "instrument" not in ProfileConfig().model_dump(mode="json")
    with_one = ProfileConfig(instrument=InstrumentConfig(sample_displacement_mm=(-0.1, 0.1)))
    assert ProfileConfig.model_validate(with_one.model_dump(mode="json")) == with_one
    # the lab set-up documented in docs/patterns.md is one valid profile section
    docs = (Path(__file__).parents[2] / "docs" / "patterns.md").read_text()
    block = re.search(r"```yaml\n(profile:.*?)```", docs, re.S)
    assert block is not None
    profile = ProfileConfig.model_validate(yaml.safe_load(block.group(1))["profile"])
    assert profile.needs_orientation and profile.step_deg == pytest.approx(0.02)
    assert profile.instrument.divergence_slit == "automatic"


def test_sampler_with_every_effect_is_seeded_and_records_its_draws(nacl_and_mg) -> None:
    peaks = _cubic_pool(nacl_and_mg[0])
    inst = InstrumentConfig(
        divergence_slit="automatic",
        monochromator_two_theta_deg=26.57,
        sample_displacement_mm=(-0.2, 0.2),
        widths=TCHWidthConfig(),
        preferred_orientation=MarchDollaseConfig(),
        chebyshev_background=ChebyshevBackgroundConfig(),
        amorphous_hump=AmorphousHumpConfig(),
        counting_noise=CountingNoiseConfig(),
    )
    cfg = ProfileConfig(ka_doublet=True, zero_shift_deg=(-0.05, 0.05), instrument=inst)
    mix = MixtureConfig(n_materials=2, max_phases=2, batch_size=8)
    first = MixtureSampler(peaks, mix, cfg, seed=5, device="cpu").sample()
    again = MixtureSampler(peaks, mix, cfg, seed=5, device="cpu").sample()
    assert torch.equal(first[0], again[0])
    patterns, fractions, extras = first
    assert patterns.shape == (8, cfg.n_points)
    assert float(patterns.min()) == 0.0 and float(patterns.max()) == 1.0
    for key, shape in {
        "zero_shift_deg": (8,),
        "sample_displacement_mm": (8,),
        "caglioti_w_deg2": (8,),
        "lorentz_y_deg": (8, 2),
        "march_dollase_ratio": (8, 2),
        "march_dollase_axis_hkl": (8, 2, 3),
        "chebyshev_coefficients": (8, 4),
        "hump_height": (8,),
        "max_counts": (8,),
    }.items():
        assert tuple(extras[key].shape) == shape, key
    assert bool(((extras["max_counts"] >= 1e3) & (extras["max_counts"] <= 1e5)).all())
    assert bool((extras["sample_displacement_mm"].abs() <= 0.2).all())
