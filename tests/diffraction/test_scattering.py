"""Anomalous dispersion and displacement parameters in the simulator, against hand sums.

References: the International Tables (Vol. C, Table 4.2.6.8) for f', f'' at Cu Ka; an
independent brute-force powder sum over every reflection of the full sphere (no Friedel
halving) with complex form factors; pymatgen's XRDCalculator for element-wise B.
"""

import math
import warnings

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from tests import support
from xrdpipe.diffraction import (
    SITE_B_PROPERTY,
    anomalous_factors,
    photon_energy_ev,
    scattering_coefficients,
    simulate_peaks,
)
from xrdpipe.structures.displacement import attach_displacements
from xrdpipe.structures.parse import parse_structure, read_cif_text

CU_KA1 = 1.540593  # angstrom; 8047.8 eV
ZERO = np.zeros((1, 3, 3))


def f0(symbol: str, s: np.ndarray) -> np.ndarray:
    """pymatgen's fit, written out: f0 = Z - 41.78214 s^2 sum_i a_i exp(-b_i s^2)."""
    z, coeff = scattering_coefficients(symbol)
    s2 = np.asarray(s) ** 2
    return z - 41.78214 * s2 * sum(a * np.exp(-b * s2) for a, b in coeff)


def lorentz_polarisation(two_theta_deg: np.ndarray) -> np.ndarray:
    t = np.radians(two_theta_deg) / 2
    return (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))


def test_chantler_values_are_f_prime_not_z_plus_f_prime() -> None:
    energy = photon_energy_ev(CU_KA1)
    assert energy == pytest.approx(8047.8, abs=0.1)
    ni, bi = anomalous_factors("Ni", energy), anomalous_factors("Bi", energy)
    # Chantler via xraydb 4.5.8: Ni (-3.042, 0.505), Bi (-4.260, 8.833); International
    # Tables (Cu Ka): Ni (-3.003, 0.509), Bi (-4.108, 8.967). f1_chantler is f', not Z + f'.
    assert ni == pytest.approx((-3.042, 0.505), abs=2e-3)
    assert bi == pytest.approx((-4.260, 8.833), abs=2e-3)
    assert ni == pytest.approx((-3.003, 0.509), abs=0.1)
    assert bi == pytest.approx((-4.108, 8.967), abs=0.2)


@pytest.mark.parametrize(
    ("symbol", "lattice"),
    [("Ni", Lattice.cubic(3.524)), ("Bi", Lattice.hexagonal(4.546, 11.862))],
)
def test_anomalous_changes_one_element_crystals_by_the_form_factor_ratio(symbol, lattice):
    """For one element, every |F|^2 scales by |f0 + f' + i f''|^2 / f0^2 at its own s."""
    if symbol == "Ni":  # fcc
        coords = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    else:  # rhombohedral Bi (R-3m, z = 0.2339) in its hexagonal cell
        z = 0.2339
        base = [[0, 0, z], [0, 0, -z]]
        shifts = [[0, 0, 0], [2 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 2 / 3]]
        coords = [[b[i] + t[i] for i in range(3)] for t in shifts for b in base]
    crystal = Structure(lattice, [symbol] * len(coords), coords)
    plain = simulate_peaks(crystal, ZERO, wavelength=CU_KA1, two_theta_range=(20, 120))
    anom = simulate_peaks(
        crystal, ZERO, wavelength=CU_KA1, two_theta_range=(20, 120), scattering="anomalous"
    )
    n = int(plain.n_peaks[0])
    assert n == int(anom.n_peaks[0]) and n >= 5
    np.testing.assert_array_equal(anom.two_theta, plain.two_theta)
    fp, fpp = anomalous_factors(symbol, photon_energy_ev(CU_KA1))
    s = 1 / (2 * plain.d_spacing[0, :n])
    base = f0(symbol, s)
    expected = ((base + fp) ** 2 + fpp**2) / base**2
    np.testing.assert_allclose(anom.intensity_raw[0, :n] / plain.intensity_raw[0, :n], expected,
                               rtol=1e-12)  # fmt: skip
    if symbol == "Ni":
        # forward scattering: (28 - 3.04)^2 / 28^2 = 0.795 (the issue's ~20 %); Ni 111 at
        # s = sqrt(3) / (2 * 3.524) = 0.24575: f0 = 20.528,
        # ((20.528 - 3.042)^2 + 0.505^2) / 20.528^2 = (305.76 + 0.255) / 421.40 = 0.7262
        assert ((28 + fp) ** 2 + fpp**2) / 28**2 == pytest.approx(0.795, abs=1e-3)
        assert f0("Ni", math.sqrt(3) / (2 * 3.524)) == pytest.approx(20.528, abs=1e-3)
        assert expected[0] == pytest.approx(0.7262, abs=1e-4)
    else:
        # Bi 003 (d = 11.862 / 3, s = 0.12645): f0 = 76.318,
        # ((76.318 - 4.260)^2 + 8.833^2) / 76.318^2 = (5192.3 + 78.0) / 5824.4 = 0.9049
        assert f0("Bi", 3 / (2 * 11.862)) == pytest.approx(76.318, abs=1e-3)
        assert expected[0] == pytest.approx(0.9049, abs=1e-4)


def test_friedel_pairs_of_a_non_centrosymmetric_crystal() -> None:
    """Zinc-blende GaAs: F(h) != F(-h) with f''; a powder ring holds both."""
    lattice = Lattice.cubic(5.6533)
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    crystal = Structure(lattice, ["Ga"] * 4 + ["As"] * 4, np.vstack([frac, frac + 0.25]))
    rng = (20.0, 110.0)
    table = simulate_peaks(
        crystal, ZERO, wavelength=CU_KA1, two_theta_range=rng, scattering="anomalous"
    )
    energy = photon_energy_ev(CU_KA1)
    # brute force over the full sphere of hkl (no Friedel halving), complex f per site
    hkl = np.array(np.meshgrid(*[np.arange(-12, 13)] * 3, indexing="ij")).reshape(3, -1).T
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g = np.linalg.norm(hkl @ lattice.reciprocal_lattice_crystallographic.matrix, axis=1)
    two_theta = np.degrees(2 * np.arcsin(np.clip(CU_KA1 * g / 2, 0, 1)))
    keep = (two_theta >= rng[0]) & (two_theta <= rng[1]) & (CU_KA1 * g / 2 < 1)
    hkl, g, two_theta = hkl[keep], g[keep], two_theta[keep]
    f_site = []
    for symbol in ["Ga"] * 4 + ["As"] * 4:
        fp, fpp = anomalous_factors(symbol, energy)
        f_site.append(f0(symbol, g / 2) + fp + 1j * fpp)
    phase = np.exp(2j * np.pi * hkl @ crystal.frac_coords.T)  # (M, sites)
    intensity = np.abs((np.array(f_site).T * phase).sum(axis=1)) ** 2
    intensity = intensity * lorentz_polarisation(two_theta)
    bins = np.rint(two_theta / 1e-5)
    peaks = {b: intensity[bins == b].sum() for b in np.unique(bins)}
    strongest = max(peaks.values())  # pymatgen's rule: absences below 1e-3 % are dropped
    peaks = {b: v for b, v in peaks.items() if 100 * v / strongest > 1e-3}
    n = int(table.n_peaks[0])
    assert n == len(peaks)
    expected = np.array([peaks[b] for b in sorted(peaks)])
    np.testing.assert_allclose(table.intensity_raw[0, :n], expected, rtol=1e-10)
    # and the Bijvoet pair 111 / -1-1-1 really differs, so 2 |F(h)|^2 would be wrong
    f111 = [(np.array(f_site)[:, i] * phase[i]).sum() for i in range(len(hkl))]
    i111 = np.flatnonzero((hkl == [1, 1, 1]).all(axis=1))[0]
    j111 = np.flatnonzero((hkl == [-1, -1, -1]).all(axis=1))[0]
    assert abs(abs(f111[i111]) ** 2 / abs(f111[j111]) ** 2 - 1) > 0.01


def test_per_site_b_against_a_hand_sum() -> None:
    """CsCl: F = f_Cs e^{-B_Cs s^2} + (-1)^(h+k+l) f_Cl e^{-B_Cl s^2}, I = m |F|^2 LP."""
    crystal = Structure(Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    crystal.add_site_property(SITE_B_PROPERTY, [1.2, math.nan])  # Cl: the overall B
    table = simulate_peaks(crystal, ZERO, displacement="cif", overall_b=2.5)
    n = int(table.n_peaks[0])
    s = 1 / (2 * table.d_spacing[0, :n])
    sign = (-1.0) ** table.hkl[0, :n].sum(axis=1)
    amp = f0("Cs", s) * np.exp(-1.2 * s**2) + sign * f0("Cl", s) * np.exp(-2.5 * s**2)
    expected = table.multiplicity[0, :n] * amp**2 * lorentz_polarisation(table.two_theta[0, :n])
    np.testing.assert_allclose(table.intensity_raw[0, :n], expected, rtol=1e-12)
    # the default ignores the site property: pymatgen's pattern
    plain = simulate_peaks(crystal, ZERO)
    ref = XRDCalculator().get_pattern(crystal, two_theta_range=(10, 80))
    np.testing.assert_allclose(plain.intensity[0, : len(ref.y)], ref.y, atol=1e-6)


def test_overall_b_is_pymatgen_with_that_b_for_every_element() -> None:
    crystal = Structure(Lattice.cubic(4.123), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = simulate_peaks(crystal, ZERO, overall_b=0.8)
    calc = XRDCalculator(debye_waller_factors={"Cs": 0.8, "Cl": 0.8})
    ref = calc.get_pattern(crystal, scaled=False, two_theta_range=(10, 80))
    np.testing.assert_allclose(table.intensity_raw[0, : len(ref.y)], ref.y, rtol=1e-12)


@pytest.mark.skipif(not support.CIF_DIR.is_dir(), reason="no COD sample")
def test_cif_b_of_a_real_entry_matches_pymatgen_with_those_b() -> None:
    """COD 1501508 (PbMg1/3Nb2/3O3-PbTiO3, B_iso per label; a mixed Ti/Nb/Mg site)."""
    text = read_cif_text(support.CIF_DIR / "1501508.cif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crystal = attach_displacements(parse_structure(text), text)
    b_of = {"Pb": 3.98, "Ti": 0.49, "Nb": 0.49, "Mg": 0.49, "O": 1.63}  # from the CIF
    table = simulate_peaks(crystal, ZERO, displacement="cif")
    ref = XRDCalculator(debye_waller_factors=b_of).get_pattern(crystal, two_theta_range=(10, 80))
    n = int(table.n_peaks[0])
    assert n == len(ref.y)
    np.testing.assert_allclose(table.intensity[0, :n], ref.y, atol=1e-6)
    assert np.abs(table.intensity[0, :n] - simulate_peaks(crystal, ZERO).intensity[0, :n]).max() > 1


def test_bad_modes_are_named() -> None:
    crystal = Structure(Lattice.cubic(4.0), ["Na"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="scattering 'resonant' is not one of"):
        simulate_peaks(crystal, ZERO, scattering="resonant")
    with pytest.raises(ValueError, match="displacement 'site' is not one of"):
        simulate_peaks(crystal, ZERO, displacement="site")
    with pytest.raises(ValueError, match="overall_b=-1"):
        simulate_peaks(crystal, ZERO, overall_b=-1.0)
