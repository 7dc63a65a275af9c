"""The batched simulator against pymatgen's XRDCalculator (the reference), and strains."""

import warnings
from functools import cache

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tests import support
from xrdpipe.diffraction import (
    PeakTable,
    apply_strain,
    has_scattering_factors,
    point_group_rotations,
    reflection_upper_bound,
    sample_strains,
    simulate_peaks,
    strain_conditions,
)
from xrdpipe.errors import StructureError

CIF_DIR = support.CIF_DIR

# one small entry of each crystal system, plus a partially occupied one (reference.csv)
ENTRIES = {
    "triclinic": "2242045",
    "monoclinic": "3000024",
    "orthorhombic": "9007668",
    "tetragonal": "2100456",
    "trigonal": "9008098",
    "hexagonal": "1200017",
    "cubic": "1010995",
    "partial": "1501508",
}

TWO_THETA_ATOL = 1e-6  # degrees
INTENSITY_RTOL = 1e-6
STRONG = 1.0  # percent of the strongest peak above which intensities are compared relatively

pytestmark = pytest.mark.skipif(not CIF_DIR.is_dir(), reason=f"no COD sample at {CIF_DIR}")


@cache
def load(cod_id: str) -> Structure:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser = CifParser(CIF_DIR / f"{cod_id}.cif", occupancy_tolerance=1.05)
        return parser.parse_structures(primitive=False)[0]


def strained(structure: Structure, eps: np.ndarray) -> Structure:
    lattice = Lattice(apply_strain(structure.lattice.matrix, eps))
    return Structure(lattice, structure.species_and_occu, structure.frac_coords)


def assert_matches_pymatgen(
    structure: Structure,
    strains: np.ndarray,
    table: PeakTable,
    wavelength: str | float = "CuKa",
    two_theta_range: tuple[float, float] = (10, 80),
) -> None:
    calc = XRDCalculator(wavelength)
    for i, eps in enumerate(strains):
        crystal = strained(structure, eps)
        ref = calc.get_pattern(crystal, scaled=True, two_theta_range=two_theta_range)
        raw = calc.get_pattern(crystal, scaled=False, two_theta_range=two_theta_range)
        n = int(table.n_peaks[i])
        assert n == len(ref.x), f"strain {i}: {n} peaks, pymatgen {len(ref.x)}"
        assert table.mask[i, :n].all() and not table.mask[i, n:].any()
        np.testing.assert_allclose(table.two_theta[i, :n], ref.x, rtol=0, atol=TWO_THETA_ATOL)
        np.testing.assert_allclose(table.d_spacing[i, :n], ref.d_hkls, rtol=1e-9)
        strong = ref.y > STRONG
        np.testing.assert_allclose(table.intensity[i, :n][strong], ref.y[strong], INTENSITY_RTOL)
        np.testing.assert_allclose(table.intensity[i, :n], ref.y, rtol=0, atol=1e-6)
        np.testing.assert_allclose(table.intensity_raw[i, :n][strong], raw.y[strong], 1e-6)
        mult = [sum(fam["multiplicity"] for fam in peak) for peak in ref.hkls]
        np.testing.assert_array_equal(table.multiplicity[i, :n], mult)
        # the first family's representative (4-index hkil written as hkl)
        rep = [peak[0]["hkl"] for peak in ref.hkls]
        rep = [(r[0], r[1], r[-1]) for r in rep]
        np.testing.assert_array_equal(table.hkl[i, :n], rep)
        assert table.volume[i] == pytest.approx(crystal.volume, rel=1e-12)
        assert table.density[i] == pytest.approx(float(crystal.density), rel=1e-9)
        # padding is zeros, never NaN
        assert not np.any(table.two_theta[i, n:]) and not np.any(table.hkl[i, n:])


@pytest.mark.parametrize("label", list(ENTRIES))
def test_unconstrained_strains_match_pymatgen(label: str) -> None:
    structure = load(ENTRIES[label])
    rng = np.random.default_rng(7)
    strains = np.concatenate([np.zeros((1, 3, 3)), sample_strains(3, 0.05, rng)])
    table = simulate_peaks(structure, strains)
    assert table.hkl.dtype == np.int32 and table.multiplicity.dtype == np.int32
    assert np.all(np.diff(table.two_theta[0, : table.n_peaks[0]]) > 0)
    assert_matches_pymatgen(structure, strains, table)


@pytest.mark.parametrize("label", ["monoclinic", "trigonal", "hexagonal", "cubic", "partial"])
def test_symmetry_strains_match_pymatgen(label: str) -> None:
    structure = load(ENTRIES[label])
    rng = np.random.default_rng(11)
    rots = point_group_rotations(structure)
    strains = sample_strains(2, 0.05, rng, mode="symmetry", rotations=rots)
    table = simulate_peaks(structure, strains)
    assert_matches_pymatgen(structure, strains, table)


def test_other_wavelength_and_range_match_pymatgen() -> None:
    structure = load(ENTRIES["trigonal"])
    strains = sample_strains(2, 0.03, np.random.default_rng(3))
    table = simulate_peaks(structure, strains, wavelength="MoKa", two_theta_range=(5, 40))
    assert_matches_pymatgen(structure, strains, table, "MoKa", (5, 40))
    table = simulate_peaks(structure, strains, wavelength=1.2, two_theta_range=(20, 100))
    assert_matches_pymatgen(structure, strains, table, 1.2, (20, 100))


def test_debye_waller_matches_pymatgen() -> None:
    structure = load(ENTRIES["cubic"])
    dw = {el.symbol: 0.5 + 0.1 * i for i, el in enumerate(structure.composition.elements)}
    strains = sample_strains(2, 0.05, np.random.default_rng(5))
    table = simulate_peaks(structure, strains, debye_waller_factors=dw)
    calc = XRDCalculator(debye_waller_factors=dw)
    for i, eps in enumerate(strains):
        ref = calc.get_pattern(strained(structure, eps), two_theta_range=(10, 80))
        n = table.n_peaks[i]
        assert n == len(ref.x)
        np.testing.assert_allclose(table.intensity[i, :n], ref.y, rtol=0, atol=1e-6)


def test_symmetry_mode_keeps_the_space_group() -> None:
    for label in ("monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"):
        structure = load(ENTRIES[label])
        before = SpacegroupAnalyzer(structure, symprec=1e-3).get_space_group_number()
        rots = point_group_rotations(structure)
        rng = np.random.default_rng(1)
        # amplitude exactly 0.05: rescale the sampled direction
        eps = sample_strains(3, 0.05, rng, mode="symmetry", rotations=rots)
        eps *= 0.05 / np.abs(eps).max(axis=(1, 2))[:, None, None]
        for e in eps:
            after = SpacegroupAnalyzer(strained(structure, e), symprec=1e-3)
            assert after.get_space_group_number() == before, (label, e)
        # an unconstrained strain breaks it (except for triclinic, not tested here)
        e = sample_strains(1, 0.05, np.random.default_rng(2))[0]
        e *= 0.05 / np.abs(e).max()
        assert (
            SpacegroupAnalyzer(strained(structure, e), symprec=1e-3).get_space_group_number()
            < before
        )


def test_strain_sampling_is_deterministic_and_bounded() -> None:
    structure = load(ENTRIES["tetragonal"])
    a = strain_conditions(structure, 50, 20, 0.05, seed=3, material_index=4)
    b = strain_conditions(structure, 50, 20, 0.05, seed=3, material_index=4)
    c = strain_conditions(structure, 50, 20, 0.05, seed=3, material_index=5)
    assert a.shape == (71, 3, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[:70], c[:70])
    np.testing.assert_array_equal(a[-1], np.zeros((3, 3)))
    train, test = a[:50].reshape(50, 9), a[50:70].reshape(20, 9)
    assert not (train[:, None, :] == test[None, :, :]).all(axis=2).any()
    np.testing.assert_array_equal(a, np.swapaxes(a, 1, 2))
    amp = np.abs(a[:70]).max(axis=(1, 2))
    assert amp.max() < 0.05 and amp.min() > 0
    sym = strain_conditions(structure, 10, 5, 0.05, mode="symmetry", seed=3)
    # tetragonal: eps_xx == eps_yy and no shear
    np.testing.assert_allclose(sym[:, 0, 0], sym[:, 1, 1], atol=1e-12)
    np.testing.assert_allclose(sym[:, 0, 1], 0, atol=1e-12)
    assert np.abs(sym[:15]).max() < 0.05 and np.all(np.abs(sym[:15]).max(axis=(1, 2)) > 0)


def test_apply_strain_uses_the_full_tensor() -> None:
    lattice = np.array([[3.0, 0.0, 0.0], [0.5, 4.0, 0.0], [0.2, 0.3, 5.0]])
    eps = np.array([[0.01, 0.02, 0.0], [0.02, -0.01, 0.03], [0.0, 0.03, 0.0]])
    expected = np.array([(np.eye(3) + eps) @ row for row in lattice])
    np.testing.assert_allclose(apply_strain(lattice, eps), expected, rtol=1e-15)
    np.testing.assert_allclose(apply_strain(lattice, eps[None])[0], expected, rtol=1e-15)


def test_reflection_upper_bound_and_max_peaks() -> None:
    structure = load(ENTRIES["monoclinic"])
    bound = reflection_upper_bound(structure, 0.05)
    strains = sample_strains(100, 0.05, np.random.default_rng(0))
    strains *= 0.05 / np.abs(strains).max(axis=(1, 2))[:, None, None]
    table = simulate_peaks(structure, strains, max_peaks=bound)
    assert table.max_peaks == bound
    assert table.n_peaks.max() <= bound
    with pytest.raises(StructureError) as err:
        simulate_peaks(structure, strains, max_peaks=int(table.n_peaks.max()) - 1)
    assert err.value.reason == "too_many_reflections"
    with pytest.raises(StructureError) as err:
        simulate_peaks(structure, strains, max_reflections=10)
    assert err.value.reason == "too_many_reflections"


def test_no_scattering_factors_is_a_structure_error() -> None:
    assert has_scattering_factors("Fe") and not has_scattering_factors("X")
    crystal = Structure(Lattice.cubic(4.0), ["Na", DummySpecies("X")], [[0, 0, 0], [0.5] * 3])
    with pytest.raises(StructureError) as err:
        simulate_peaks(crystal, np.zeros((1, 3, 3)))
    assert (err.value.stage, err.value.reason) == ("simulate", "no_scattering_factors")


@pytest.mark.parametrize("max_peaks", [None, 400])
def test_batching_does_not_change_results(monkeypatch: pytest.MonkeyPatch, max_peaks) -> None:
    from xrdpipe.diffraction import peaks

    structure = load(ENTRIES["triclinic"])
    strains = strain_conditions(structure, 20, 5, 0.05, seed=1)
    whole = simulate_peaks(structure, strains, max_peaks=max_peaks)
    monkeypatch.setattr(peaks, "CHUNK_ELEMENTS", 1000)  # a few strains per batch
    batched = simulate_peaks(structure, strains, max_peaks=max_peaks)
    for name in ("multiplicity", "hkl", "mask", "n_peaks", "two_theta"):
        np.testing.assert_array_equal(getattr(batched, name), getattr(whole, name))
    # BLAS may sum the 4 form-factor terms in another order for another block length
    np.testing.assert_allclose(batched.intensity, whole.intensity, rtol=1e-13)
    # the unstrained reference condition (last) is pymatgen's pattern of the structure
    assert_matches_pymatgen(structure, strains[-1:], _row(whole, -1))


def _row(table: PeakTable, i: int) -> PeakTable:
    import dataclasses

    return dataclasses.replace(
        table,
        **{f.name: getattr(table, f.name)[i : i + 1 or None] for f in dataclasses.fields(table)},
    )


def test_radix_row_sort_equals_stable_argsort() -> None:
    from xrdpipe.diffraction.peaks import _sort_rows

    rng = np.random.default_rng(0)
    g = rng.uniform(0.1, 0.9, size=(50, 400))
    g[:, 0:392:7] = g[:, 1:393:7]  # exact ties
    g[:, 3] = np.nextafter(g[:, 5], 1)  # one-ulp neighbours share a 32-bit bin
    valid = rng.random(g.shape) > 0.2
    order, sorted_g = _sort_rows(g, valid, 0.1, 0.9)
    expected = np.argsort(np.where(valid, g, np.inf), axis=1, kind="stable")
    np.testing.assert_array_equal(order[valid.sum(1)[:, None] > np.arange(400)],
                                  expected[valid.sum(1)[:, None] > np.arange(400)])  # fmt: skip
    assert np.all(np.diff(sorted_g, axis=1)[np.isfinite(sorted_g[:, 1:])] >= 0)
