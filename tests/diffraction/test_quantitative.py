"""Hill-Howard, absorption and Brindley against hand-computed examples and own quadratures."""

import math
import warnings

import numpy as np
import pytest
import torch
import xraydb
from pymatgen.core import Lattice, Structure
from scipy.integrate import quad

from xrdpipe.diffraction import photon_energy_ev, simulate_peaks
from xrdpipe.diffraction.quantitative import (
    MicroabsorptionWarning,
    brindley_factors,
    cell_mass,
    hill_howard_weight_fractions,
    linear_absorption_coefficient,
    particle_absorption_factor,
    particle_absorption_grid,
    weight_mode_scale,
)
from xrdpipe.patterns.mixtures import mixture_intensities

CU_KA1 = 1.540593


def test_hill_howard_by_hand() -> None:
    # S Z M V: 2e-3 * 4 * 74.69 * 72.9 = 43.559208 and 1e-3 * 2 * 465.96 * 330.0 = 307.5336
    # w = 43.559208 / 351.092808 = 0.1240675, 307.5336 / 351.092808 = 0.8759325
    w = hill_howard_weight_fractions(
        np.array([2e-3, 1e-3]), np.array([4, 2]), np.array([74.69, 465.96]),
        np.array([72.9, 330.0]),
    )  # fmt: skip
    np.testing.assert_allclose(w, [43.559208 / 351.092808, 307.5336 / 351.092808],
                               rtol=1e-12)  # fmt: skip
    assert w[0] == pytest.approx(0.1240675, abs=1e-7)


def rock_salt(a: float, cation: str, anion: str) -> Structure:
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return Structure(Lattice.cubic(a), [cation] * 4 + [anion] * 4, np.vstack([frac, frac + 0.5]))


def test_weight_mode_mixtures_give_hill_howard_back_the_weights() -> None:
    """patterns.mixtures' weight mode (intensity_raw * w / (rho V^2)) is Hill-Howard's S."""
    u = 0.3048  # rutile TiO2, P4_2/mnm, Z = 2
    rutile = Structure(Lattice.tetragonal(4.594, 2.959), ["Ti"] * 2 + ["O"] * 4,
                       [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [-u, -u, 0],
                        [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]])  # fmt: skip
    phases = [rock_salt(4.177, "Ni", "O"), rutile]
    tables = [simulate_peaks(p, np.zeros((1, 3, 3))) for p in phases]
    width = max(t.max_peaks for t in tables)
    raw = np.zeros((2, width))
    for k, t in enumerate(tables):
        raw[k, : t.max_peaks] = t.intensity_raw[0]
    density = np.array([t.density[0] for t in tables])
    volume = np.array([t.volume[0] for t in tables])
    w = np.array([0.3, 0.7])
    mixed = mixture_intensities(
        torch.zeros(2, width), torch.tensor(w), "weight", intensity_raw=torch.tensor(raw),
        volume=torch.tensor(volume), density=torch.tensor(density),
    ).double().numpy()  # fmt: skip
    scale = mixed[:, 0] / raw[:, 0]  # per phase, the same on every peak
    np.testing.assert_allclose(mixed[0, : tables[0].max_peaks] / raw[0, : tables[0].max_peaks],
                               scale[0], rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(scale, weight_mode_scale(w, density, volume), rtol=1e-6)
    # Z and M from the compositions, independent of the densities
    z = np.array([p.composition.get_reduced_composition_and_factor()[1] for p in phases])
    mass = np.array([p.composition.reduced_composition.weight for p in phases])
    assert list(z) == [4, 2]
    # rho V N_A = Z M (pymatgen rounds its amu-to-gram constant at ~1e-9)
    np.testing.assert_allclose(cell_mass(density, volume), z * mass, rtol=1e-8)
    np.testing.assert_allclose(hill_howard_weight_fractions(scale, z, mass, volume), w,
                               rtol=1e-6)  # fmt: skip


def test_linear_absorption_coefficient_by_hand() -> None:
    energy = photon_energy_ev(CU_KA1)
    mu_ni, mu_o = xraydb.mu_elam("Ni", energy), xraydb.mu_elam("O", energy)
    assert mu_ni == pytest.approx(48.72, abs=0.01) and mu_o == pytest.approx(11.42, abs=0.01)
    # NiO, rho 6.67: w_Ni = 58.6934 / 74.6928 = 0.785799; mu = 6.67 (0.7858 * 48.72 +
    # 0.2142 * 11.42) = 6.67 * 40.731 = 271.67 1/cm
    w_ni = 58.6934 / (58.6934 + 15.9994)
    mu = linear_absorption_coefficient("NiO", 6.67, CU_KA1)
    assert mu == pytest.approx(6.67 * (w_ni * mu_ni + (1 - w_ni) * mu_o), rel=1e-5)
    assert mu == pytest.approx(271.67, abs=0.05)
    # xraydb's own material path agrees
    assert mu == pytest.approx(xraydb.material_mu("NiO", energy, 6.67), rel=1e-4)


def tau_forward(a: float) -> float:
    """2theta -> 0: each point's path is its chord, tau = 3 int_0^1 t^2 exp(-2 a t) dt
    = 3 [2/k^3 - e^-k (1/k + 2/k^2 + 2/k^3)], k = 2a."""
    k = 2 * a
    return 3 * (2 / k**3 - math.exp(-k) * (1 / k + 2 / k**2 + 2 / k**3))


def tau_back(a: float) -> float:
    """2theta = 180: path 2 d (d: distance to the surface along the beam); for the chord at
    impact b (length c = 2 sqrt(1 - b^2)) int_0^c exp(-2 a d) dd = (1 - e^{-2ac}) / (2a),
    so tau = 3/(4a) int_0^1 b (1 - exp(-4 a sqrt(1 - b^2))) db."""
    value, _ = quad(lambda b: b * (1 - math.exp(-4 * a * math.sqrt(1 - b * b))), 0, 1,
                    epsabs=1e-13)  # fmt: skip
    return 3 / (4 * a) * value


def test_particle_absorption_factor_against_own_quadratures() -> None:
    assert tau_forward(0.1) == pytest.approx(0.861361, abs=1e-6)  # by hand: 3 * 0.2871203
    for a in (-0.5, -0.1, 0.05, 0.3, 0.5):
        assert particle_absorption_factor(a, two_theta=0.0) == pytest.approx(
            tau_forward(a), abs=1e-6
        )
        assert particle_absorption_factor(a, two_theta=180.0) == pytest.approx(
            tau_back(a), abs=1e-6
        )
    assert particle_absorption_factor(0.0) == pytest.approx(1.0, abs=1e-12)
    # small a: tau = 1 - 1.5 a (mean path 1.5 R at any angle)
    for angle in (0.0, 45.0, 90.0, 150.0):
        assert particle_absorption_factor(1e-4, angle) == pytest.approx(1 - 1.5e-4, abs=1e-7)


def test_interpolated_grid_is_the_quadrature() -> None:
    grid_a, grid_tau = particle_absorption_grid(90.0)
    a = np.random.default_rng(0).uniform(-1, 1, 200)
    np.testing.assert_allclose(np.interp(a, grid_a, grid_tau), particle_absorption_factor(a),
                               rtol=1e-6)  # fmt: skip


def test_two_phase_brindley_by_hand_and_hill_howard_recovers_the_weights() -> None:
    # phase A: mu 1881 1/cm, rho 8.9 (Bi2O3-like); phase B: mu 527 1/cm, rho 4.25 (TiO2-like)
    mu = np.array([1881.0, 527.0])
    rho = np.array([8.9, 4.25])
    w = np.array([0.4, 0.6])
    radius = 2.0  # micrometre
    # by hand: v = (0.4/8.9, 0.6/4.25) / sum = (0.044944, 0.141176) / 0.186121
    v = (w / rho) / (w / rho).sum()
    assert v[0] == pytest.approx(0.241477, abs=1e-6)
    mu_bar = (v * mu).sum()  # 0.241477 * 1881 + 0.758523 * 527 = 454.218 + 399.742
    assert mu_bar == pytest.approx(853.96, abs=0.01)
    a = (mu - mu_bar) * radius * 1e-4  # (1027.04, -326.96) * 2e-4 = (0.205408, -0.065392)
    tau = np.array([tau_back(x) for x in a])
    got = brindley_factors(w, mu, rho, radius, two_theta=180.0)
    np.testing.assert_allclose(got, tau, atol=1e-6)
    assert tau[0] < 1 < tau[1]
    # scales a measurement of that mixture gives (weight mode times tau)
    volume = np.array([330.0, 62.4])
    z_mass = cell_mass(rho, volume)
    scale = weight_mode_scale(w, rho, volume) * tau
    plain = hill_howard_weight_fractions(scale, 1.0, z_mass, volume)
    assert plain[0] < 0.4 - 0.05  # the strong absorber is under-estimated
    corrected = hill_howard_weight_fractions(
        scale, 1.0, z_mass, volume, linear_absorption=mu, density=rho, particle_radius=radius,
        two_theta=180.0,
    )  # fmt: skip
    np.testing.assert_allclose(corrected, w, atol=1e-5)  # tau's quadrature is good to 1e-6


def test_brindley_warns_beyond_its_range() -> None:
    mu, rho, w = np.array([1881.0, 527.0]), np.array([8.9, 4.25]), np.array([0.4, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error", MicroabsorptionWarning)
        brindley_factors(w, mu, rho, 2.0)  # |a| <= 0.21: quiet
    with pytest.warns(MicroabsorptionWarning, match="exceeds 0.5"):
        brindley_factors(w, mu, rho, 10.0)  # a = 1.03
    with pytest.raises(ValueError, match="particle_radius needs linear_absorption"):
        hill_howard_weight_fractions(np.ones(2), 1.0, np.ones(2), np.ones(2), particle_radius=1.0)
