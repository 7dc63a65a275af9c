"""The ``tables`` mode's f0 (Waasmaier-Kirfel) against hand sums, and pymatgen's mode unchanged.

References: Waasmaier & Kirfel, Acta Cryst. A51, 416 (1995), Table 1 (the coefficients as
xraydb 4.5.8 ships them in its ``Waasmaier`` table), summed by hand below; an independent
brute-force powder sum over the full sphere of reflections of KLaS2 (COD 2105798) with
those coefficients; pymatgen's XRDCalculator for the default mode.
"""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import xraydb
from pymatgen.analysis.diffraction.xrd import XRDCalculator

from xrdpipe.diffraction import anomalous_factors, photon_energy_ev, simulate_peaks
from xrdpipe.diffraction.scattering import form_factor_fit, waasmaier_kirfel_params
from xrdpipe.structures.displacement import attach_displacements
from xrdpipe.structures.parse import parse_structure

CU_KA1 = 1.540593  # angstrom
ZERO = np.zeros((1, 3, 3))
KLAS2 = Path(__file__).resolve().parents[2] / "benchmarks" / "quantify" / "phases" / "KLaS2.cif"

# Waasmaier-Kirfel (1995): f0(s) = sum_i a_i exp(-b_i s^2) + c, s = sin(theta)/lambda
WK = {  # element: ((a_1..a_5), (b_1..b_5), c)
    "La": (
        (19.966019, 27.329655, 11.018425, 3.086696, 17.335455),
        (3.197408, 0.003446, 19.955492, 141.381973, 0.341817),
        -21.745489,
    ),
    "Y": (
        (17.79204, 10.253252, 5.714949, 3.170516, 0.918251),
        (1.429691, 13.132816, 0.112173, 108.197029, 0.112173),
        1.131787,
    ),
    "K": (
        (8.163991, 7.146945, 1.07014, 0.877316, 1.486434),
        (12.816323, 0.808945, 210.327011, 39.597652, 0.052821),
        0.253614,
    ),
    "S": (
        (6.372157, 5.154568, 1.473732, 1.635073, 1.209372),
        (1.514347, 22.092527, 0.061373, 55.445175, 0.646925),
        0.154722,
    ),
}


def wk_f0(symbol: str, s: np.ndarray) -> np.ndarray:
    a, b, c = WK[symbol]
    s2 = np.asarray(s, dtype=np.float64) ** 2
    return c + sum(ai * np.exp(-bi * s2) for ai, bi in zip(a, b, strict=True))


def test_la_and_y_f0_against_hand_sums_of_the_published_coefficients() -> None:
    # La, s = 0.1 (s^2 = 0.01): 19.966019 e^-0.03197408 = 19.337722, 27.329655 e^-0.00003446
    # = 27.328713, 11.018425 e^-0.19955492 = 9.025139, 3.086696 e^-1.41381973 = 0.750723,
    # 17.335455 e^-0.00341817 = 17.276301; sum 73.718598 - 21.745489 = 51.973109
    # La, s = 0.5 (s^2 = 0.25): 8.977126 + 27.306121 + 0.075072 + 0.000000 + 15.915597
    # = 52.273916 - 21.745489 = 30.528427
    # Y, s = 0.1: 17.539479 + 8.991384 + 5.708542 + 1.074574 + 0.917222 + 1.131787 = 35.362987
    # Y, s = 0.5: 12.445118 + 0.384578 + 5.556910 + 0.000000 + 0.892858 + 1.131787 = 20.411250
    hand = {("La", 0.1): 51.973109, ("La", 0.5): 30.528427,
            ("Y", 0.1): 35.362987, ("Y", 0.5): 20.411250}  # fmt: skip
    for (symbol, s), value in hand.items():
        assert wk_f0(symbol, s) == pytest.approx(value, abs=2e-6)
        assert form_factor_fit(symbol, "waasmaier-kirfel")(s) == pytest.approx(value, abs=2e-6)
        assert float(np.ravel(xraydb.f0(symbol, s))[0]) == pytest.approx(value, abs=2e-6)
    # pymatgen's fit, the finding: La +1.21 e at s = 0.1 (53.187),
    # Y -0.90 e at s = 0.5 (19.514)
    assert form_factor_fit("La")(0.1) - hand["La", 0.1] == pytest.approx(1.214, abs=2e-3)
    assert form_factor_fit("Y")(0.5) - hand["Y", 0.5] == pytest.approx(-0.897, abs=1e-3)


def test_every_neutral_atom_is_read_as_xraydb_computes_it() -> None:
    params = waasmaier_kirfel_params()
    assert len(params) == 98 and "Fe2+" not in params
    s = np.linspace(0, 2, 41)
    for symbol in params:
        fit = form_factor_fit(symbol, "waasmaier-kirfel")
        np.testing.assert_allclose(fit(s), xraydb.f0(symbol, s), atol=1e-10)
    # D counts as H; an unknown table is named
    deuterium = form_factor_fit("D", "waasmaier-kirfel")(s)
    np.testing.assert_allclose(deuterium, xraydb.f0("H", s), atol=1e-12)
    with pytest.raises(ValueError, match="table 'cromer-mann' is not one of"):
        form_factor_fit("Fe", "cromer-mann")


def klas2() -> tuple:
    text = KLAS2.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parse_structure(text), text


def test_klas2_against_a_brute_force_sum_with_the_published_tables() -> None:
    """Every peak of KLaS2 (R-3m, 12 sites) in ``tables`` mode with the CIF's B."""
    plain, text = klas2()
    crystal = attach_displacements(plain, text)
    rng = (10.0, 100.0)
    table = simulate_peaks(
        crystal, ZERO, CU_KA1, rng, scattering="tables", displacement="cif", overall_b=0.5
    )
    energy = photon_energy_ev(CU_KA1)
    # B = 8 pi^2 U_iso of the CIF: S 0.0117, La 0.0108, K 0.0204 angstrom^2
    b_of = {sym: 8 * math.pi**2 * u for sym, u in (("S", 0.0117), ("La", 0.0108), ("K", 0.0204))}
    lattice = crystal.lattice
    hkl = np.array(np.meshgrid(*[np.arange(-8, 9)] * 2, np.arange(-40, 41), indexing="ij"))
    hkl = hkl.reshape(3, -1).T
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g = np.linalg.norm(hkl @ lattice.reciprocal_lattice_crystallographic.matrix, axis=1)
    keep = CU_KA1 * g / 2 < 1
    hkl, g = hkl[keep], g[keep]
    two_theta = np.degrees(2 * np.arcsin(CU_KA1 * g / 2))
    keep = (two_theta >= rng[0]) & (two_theta <= rng[1])
    hkl, g, two_theta = hkl[keep], g[keep], two_theta[keep]
    assert two_theta.size and hkl[:, 2].max() < 40  # the sphere is inside the box
    s = g / 2
    amplitude = np.zeros(len(hkl), dtype=complex)
    for site in crystal:
        sym = site.specie.symbol
        fp, fpp = anomalous_factors(sym, energy)
        f = (wk_f0(sym, s) + fp + 1j * fpp) * np.exp(-b_of[sym] * s**2)
        amplitude += f * np.exp(2j * np.pi * hkl @ site.frac_coords)
    t = np.radians(two_theta) / 2
    lp = (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))
    intensity = np.abs(amplitude) ** 2 * lp
    bins = np.rint(two_theta / 1e-5)
    peaks = {b: intensity[bins == b].sum() for b in np.unique(bins)}
    strongest = max(peaks.values())
    peaks = {b: v for b, v in peaks.items() if 100 * v / strongest > 1e-3}
    n = int(table.n_peaks[0])
    assert n == len(peaks)
    expected = np.array([peaks[b] for b in sorted(peaks)])
    np.testing.assert_allclose(table.intensity_raw[0, :n], expected, rtol=1e-9)

    # the reflections against the strongest (104): pymatgen's f0 (mode anomalous)
    # makes (009) 9.6 % and (2-13) 3.9 % too strong, relative to (104)
    anomalous = simulate_peaks(
        crystal, ZERO, CU_KA1, rng, scattering="anomalous", displacement="cif", overall_b=0.5
    )
    index = {tuple(h): i for i, h in enumerate(table.hkl[0, :n].tolist())}
    i104, i009, i213 = index[1, 0, 4], index[0, 0, 9], index[2, -1, 3]
    ours, pmg = table.intensity_raw[0], anomalous.intensity_raw[0]
    for i, excess in ((i009, 1.0957), (i213, 1.0393)):
        brute = expected[i] / expected[i104]
        assert ours[i] / ours[i104] == pytest.approx(brute, rel=1e-9)
        assert (pmg[i] / pmg[i104]) / brute == pytest.approx(excess, abs=2e-3)


def test_the_pymatgen_mode_is_still_pymatgen_on_a_la_phase() -> None:
    crystal, _ = klas2()
    table = simulate_peaks(crystal, ZERO)
    ref = XRDCalculator().get_pattern(crystal, scaled=False, two_theta_range=(10, 80))
    n = int(table.n_peaks[0])
    assert n == len(ref.y)
    np.testing.assert_allclose(table.two_theta[0, :n], ref.x, rtol=1e-13)
    np.testing.assert_allclose(table.intensity_raw[0, :n], ref.y, rtol=1e-12)


def test_cif_displacement_without_attached_b_is_refused() -> None:
    """``parse_structure`` keeps no B: ``displacement="cif"`` must not fall back silently."""
    plain, text = klas2()
    with pytest.raises(ValueError, match="attach_displacements"):
        simulate_peaks(plain, ZERO, scattering="tables", displacement="cif", overall_b=0.5)
    attached = attach_displacements(plain, text)
    with_b = simulate_peaks(attached, ZERO, scattering="tables", displacement="cif")
    overall = simulate_peaks(attached, ZERO, scattering="tables", overall_b=0.5)
    n = int(with_b.n_peaks[0])
    assert np.abs(with_b.intensity_raw[0, :n] / overall.intensity_raw[0, :n] - 1).max() > 0.05
