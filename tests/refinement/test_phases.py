"""Reflections and the symmetry-constrained lattice (against pymatgen and simulate_peaks)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice

from tests.refinement.engine_scan import cod_structure, strained
from xrdpipe.diffraction import simulate_peaks
from xrdpipe.patterns.config import CU_KA_MEAN
from xrdpipe.refinement import lattice_model, phase_from_structure
from xrdpipe.refinement.model import march_dollase_family
from xrdpipe.refinement.phases import lorentz_polarisation, reciprocal_metric


@pytest.mark.parametrize(
    ("cod_id", "names"),
    [
        ("9008565", ("a",)),
        ("1537412", ("a", "c")),
        ("1000054", ("a", "c")),
        ("2010577", ("a", "b", "c")),
        ("9009089", ("a", "b", "c", "beta")),
        ("9001833", ("a", "b", "c", "alpha", "beta", "gamma")),
    ],
)
def test_free_parameters_by_crystal_system(cod_id, names):
    phase = phase_from_structure(cod_structure(cod_id), cod_id, (10.0, 80.0))
    assert phase.lattice.names == names
    cell = phase.lattice.constants(phase.lattice.start)
    np.testing.assert_allclose(cell, phase.lattice.reference)


def test_constraints_keep_symmetry():
    # tetragonal with the unique edge first (a non-standard setting): b = c move together
    model = lattice_model(np.array([3.0, 5.0, 5.0, 90, 90, 90]), "tetragonal")
    assert model.names == ("b", "a")
    np.testing.assert_allclose(model.constants(np.array([5.1, 3.2])), [3.2, 5.1, 5.1, 90, 90, 90])
    # hexagonal: a = b, gamma stays 120
    model = lattice_model(np.array([3.1, 3.1, 4.7, 90, 90, 120]), "trigonal")
    np.testing.assert_allclose(model.constants(np.array([3.0, 4.8])), [3.0, 3.0, 4.8, 90, 90, 120])
    # rhombohedral axes: a = b = c and alpha = beta = gamma
    model = lattice_model(np.array([5.0, 5.0, 5.0, 80, 80, 80]), "trigonal")
    assert model.names == ("a", "alpha")
    np.testing.assert_allclose(model.constants(np.array([5.2, 81.0])), [5.2] * 3 + [81.0] * 3)
    with pytest.raises(ValueError, match="crystal_system 'cubik'"):
        lattice_model(np.ones(6), "cubik")


def test_d_spacings_equal_pymatgen_in_a_refined_triclinic_cell():
    phase = phase_from_structure(cod_structure("9001833"), "kyanite", (10.0, 80.0))
    values = phase.lattice.start * np.array([1.002, 0.998, 1.001, 1.0, 1.0, 1.0]) + np.array(
        [0, 0, 0, 0.2, -0.3, 0.1]
    )
    cell = phase.lattice.constants(values)
    lattice = Lattice.from_parameters(*cell)
    expected = [lattice.d_hkl(h) for h in phase.hkl]
    np.testing.assert_allclose(phase.d_spacings(values), expected, rtol=1e-12)
    g_inv = reciprocal_metric(cell)
    np.testing.assert_allclose(g_inv, lattice.reciprocal_lattice_crystallographic.metric_tensor)


def test_reweighted_lp_matches_simulate_peaks_of_the_strained_cell():
    """Moving the lattice moves d exactly, LP as pymatgen's and |F|^2 to second order."""
    base = cod_structure("1537412")
    phase = phase_from_structure(base, "VO2", (10.0, 80.0))
    target = strained(base, (-0.003, -0.003, 0.002))
    values = np.array([target.lattice.a, target.lattice.c])
    table = simulate_peaks(target, np.zeros((3, 3)), CU_KA_MEAN, (7.0, 83.0))
    real = table.mask[0]
    d = phase.d_spacings(values)
    np.testing.assert_allclose(d, table.d_spacing[0][real], rtol=1e-10)
    two_theta = np.degrees(2 * np.arcsin(CU_KA_MEAN / (2 * d)))
    ours = phase.structure_intensities(d) * lorentz_polarisation(two_theta)
    np.testing.assert_allclose(ours, table.intensity_raw[0][real], rtol=2e-4)
    held = phase.structure_intensity * lorentz_polarisation(two_theta)
    assert np.abs(held / table.intensity_raw[0][real] - 1).max() > 5e-3  # what kappa corrects


def test_no_reflection_in_range_is_a_clear_error():
    with pytest.raises(ValueError, match="phase 'Si' has no reflection in two_theta"):
        phase_from_structure(cod_structure("9008565"), "Si", (2.0, 6.0))


def test_march_dollase_family_mean():
    phase = phase_from_structure(cod_structure("9008565"), "Si", (10.0, 80.0))
    row = [tuple(sorted(abs(int(v)) for v in h)) for h in phase.hkl].index((0, 0, 4))
    factors = march_dollase_family(phase, np.array([0, 0, 1]), 0.7)
    # docs/patterns.md: cubic {h00} with axis [001] at r = 0.7: (4 r^1.5 + 2 r^-3) / 6
    assert factors[row] == pytest.approx((4 * 0.7**1.5 + 2 * 0.7**-3) / 6, rel=1e-9)
    assert factors[row] == pytest.approx(1.362259, abs=1e-6)


def test_march_dollase_family_equals_the_engine():
    torch = pytest.importorskip("torch")
    from xrdpipe.patterns.orientation import (
        axis_projections,
        inverse_reciprocal_norms,
        march_dollase_peak_factors,
        proper_laue_rotations,
        reciprocal_basis,
    )

    structure = cod_structure("1537412")
    phase = phase_from_structure(structure, "VO2", (10.0, 80.0))
    rotations = torch.tensor(proper_laue_rotations(structure))
    basis = torch.tensor(reciprocal_basis(structure))
    hkl = torch.tensor(phase.hkl, dtype=torch.float64)
    for axis in ([0, 0, 1], [1, 1, 0], [1, 0, 1]):
        projections = axis_projections(rotations[None], basis[None], torch.tensor([axis]))[0, 0]
        engine = march_dollase_peak_factors(
            hkl,
            inverse_reciprocal_norms(hkl[None, None], basis[None])[0, 0],
            projections,
            torch.tensor(0.75, dtype=torch.float64),
        )
        ours = march_dollase_family(phase, np.array(axis), 0.75)
        np.testing.assert_allclose(ours, engine.numpy(), rtol=1e-9)


def test_cif_displacement_needs_the_b_attached():
    """``parse_structure`` keeps no B: ``displacement="cif"`` is refused, not replaced by 0."""
    import warnings
    from pathlib import Path

    from xrdpipe.structures.displacement import attach_displacements
    from xrdpipe.structures.parse import parse_structure

    cif = Path(__file__).resolve().parents[2] / "benchmarks/quantify/phases/KLaS2.cif"
    text = cif.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = parse_structure(text)
    with pytest.raises(ValueError, match=r"'b_iso' property.*attach_displacements"):
        phase_from_structure(parsed, "KLaS2", (10.0, 80.0), displacement="cif")
    attached = attach_displacements(parsed, text)
    with_b = phase_from_structure(attached, "KLaS2", (10.0, 80.0), displacement="cif")
    without = phase_from_structure(attached, "KLaS2", (10.0, 80.0))
    # B = 8 pi^2 U (La 0.85, S 0.92, K 1.61 angstrom^2) lowers the high-angle peaks
    ratio = with_b.structure_intensity / without.structure_intensity
    assert ratio.min() < 0.8 and ratio.max() < 1.0
