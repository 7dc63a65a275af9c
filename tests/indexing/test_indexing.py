"""Powder indexing: line positions, trial cells, outcomes and the joint answer.

References: pymatgen's ``XRDCalculator`` line positions of hand-built structures (hcp Mg,
rock salt, rutile, corundum, a monoclinic ZrO2), reflection conditions written out by hand,
and the project's measured-like renderer for whole scans with a planted zero shift.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator
from pymatgen.core import Lattice, Structure

from xrdpipe.config import CRYSTAL_SYSTEMS, LATTICE_SYSTEMS
from xrdpipe.evaluation import unseen as u
from xrdpipe.indexing import (
    OUTCOMES,
    IndexedCell,
    ObservedLines,
    OutcomeTable,
    combine,
    index_lines,
    index_scan,
    indexing_outcome,
    observed_lines,
    packaged_table,
    scan_wavelengths,
)
from xrdpipe.indexing.cells import reflection_table
from xrdpipe.indexing.evidence import (
    CUBIC_CALCULATED_RATIO,
    CUBIC_FIGURE_OF_MERIT,
    space_group_table,
)
from xrdpipe.indexing.lines import strip_ka2
from xrdpipe.patterns.config import CU_KA1, CU_KA2, ProfileConfig
from xrdpipe.structures.hierarchy import system_probabilities

STRUCTURES = {
    "hcp Mg": ("P6_3/mmc", Lattice.hexagonal(3.209, 5.211), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
    "rock salt": ("Fm-3m", Lattice.cubic(5.640), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "rutile": (
        "P4_2/mnm",
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "O"],
        [[0, 0, 0], [0.305, 0.305, 0]],
    ),
    "corundum": (
        "R-3c",
        Lattice.hexagonal(4.759, 12.991),
        ["Al", "O"],
        [[0, 0, 0.352], [0.306, 0, 0.25]],
    ),
    "aragonite": (
        "Pnma",
        Lattice.orthorhombic(5.740, 4.961, 7.967),
        ["Ca", "C", "O", "O"],
        [[0.760, 0.25, 0.085], [0.085, 0.25, 0.762], [0.095, 0.25, 0.923], [0.087, 0.473, 0.681]],
    ),
    "baddeleyite": (
        "P2_1/c",
        Lattice.monoclinic(5.151, 5.212, 5.317, 99.23),
        ["Zr", "O", "O"],
        [[0.276, 0.040, 0.208], [0.069, 0.332, 0.345], [0.451, 0.758, 0.479]],
    ),
}


def structure(name: str) -> Structure:
    group, lattice, species, coords = STRUCTURES[name]
    return Structure.from_spacegroup(group, lattice, species, coords)


def pymatgen_lines(name: str, shift_deg: float = 0.0) -> ObservedLines:
    """pymatgen's K-alpha1 lines of 1 % of the strongest or more, 10-80 degrees."""
    pattern = XRDCalculator(wavelength=CU_KA1).get_pattern(
        structure(name), two_theta_range=(10, 80)
    )
    keep = pattern.y >= 1.0
    return ObservedLines(pattern.x[keep] + shift_deg, pattern.y[keep], CU_KA1)


def test_reflection_conditions_by_hand():
    m = reflection_table("cubic F")[:, 0]
    assert sorted(set(m))[:6] == [3, 4, 8, 11, 12, 16]  # 111 200 220 311 222 400
    m = reflection_table("cubic I")[:, 0]
    assert sorted(set(m))[:5] == [2, 4, 6, 8, 10]  # 110 200 211 220 310
    pairs = set(map(tuple, reflection_table("rhombohedral R").tolist()))
    # -h + k + l = 3n: 003 (0, 9), 101 (1, 1), 012 (1, 4), 110 (3, 0) allowed; 100, 001 not
    assert {(0.0, 9.0), (1.0, 1.0), (1.0, 4.0), (3.0, 0.0)} <= pairs
    assert (1.0, 0.0) not in pairs and (0.0, 1.0) not in pairs
    with pytest.raises(ValueError, match="allowed: cubic P"):
        reflection_table("monoclinic P")


@pytest.mark.parametrize(
    ("name", "outcome", "a", "c"),
    [
        ("hcp Mg", "hexagonal", 3.209, 5.211),
        ("rock salt", "cubic", 5.640, 5.640),
        ("rutile", "tetragonal", 4.594, 2.959),
        ("corundum", "rhombohedral", 4.759, 12.991),
        ("aragonite", "orthorhombic", 7.967, 4.961),  # a >= b >= c: b is 5.740
    ],
)
def test_pymatgen_lines_index_to_the_right_cell(name, outcome, a, c):
    cells = index_lines(pymatgen_lines(name, shift_deg=0.04))
    found, cell = indexing_outcome(cells)
    assert found == outcome
    assert cell.a == pytest.approx(a, abs=2e-3) and cell.c == pytest.approx(c, abs=5e-3)
    if outcome == "orthorhombic":
        assert cell.b == pytest.approx(5.740, abs=2e-3)
    assert cell.zero_deg == pytest.approx(0.04, abs=2e-3)  # the planted shift
    assert cell.n_indexed == cell.n_lines and cell.figure_of_merit > 30
    calculated = cell.two_theta(CU_KA1, 80.0)  # every pymatgen line is one of the cell's
    reference = pymatgen_lines(name).two_theta
    assert np.abs(calculated[None, :] - reference[:, None]).min(axis=1).max() < 0.01


def test_a_monoclinic_pattern_has_no_cell():
    lines = pymatgen_lines("baddeleyite")
    assert len(lines) >= 20
    found, cell = indexing_outcome(index_lines(lines))
    assert found == "none" and cell is None


def test_rachinger_strip_leaves_one_line_at_k_alpha1():
    two_theta = np.arange(40.0, 60.0, 0.01)

    def line(centre: float) -> np.ndarray:
        return 1.0 / (1.0 + ((two_theta - centre) / 0.04) ** 2)

    ka1 = 50.0
    ka2 = 2 * np.rad2deg(np.arcsin(np.sin(np.deg2rad(ka1 / 2)) * CU_KA2 / CU_KA1))
    # 2 tan(25 deg) (1.54439 - 1.54056) / 1.54056 rad = 2 0.46631 0.0024861 = 0.13285 deg
    assert ka2 - ka1 == pytest.approx(0.13285, abs=2e-4)
    stripped = strip_ka2(two_theta, line(ka1) + 0.5 * line(ka2), CU_KA1, CU_KA2, 0.5)
    assert np.abs(stripped - line(ka1)).max() < 0.02
    lines = observed_lines(two_theta, 100 * (line(ka1) + 0.5 * line(ka2)) + 5, CU_KA1, CU_KA2)
    assert len(lines) == 1 and lines.two_theta[0] == pytest.approx(ka1, abs=3e-3)


def test_a_rendered_scan_indexes_with_its_planted_zero_shift():
    base = u.measured_like_profile(ProfileConfig())
    instrument = base.instrument.model_copy(update={"sample_displacement_mm": (0.0, 0.0)})
    profile = base.model_copy(update={"zero_shift_deg": (0.03, 0.03), "instrument": instrument})
    scan = u.render_structures(u.structure_peaks([structure("hcp Mg")], profile), profile, 1, 5)
    two_theta = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    found = index_scan(two_theta, scan[0].astype(float), CU_KA1, CU_KA2, 0.5)
    assert found.outcome == "hexagonal"
    assert found.cell.a == pytest.approx(3.209, abs=5e-3)
    assert found.cell.zero_deg == pytest.approx(0.03, abs=0.01)
    assert "hexagonal P cell a 3.2" in found.describe()
    record = json.loads(json.dumps(found.as_dict()))  # what predictions.json holds
    assert record["outcome"] == "hexagonal" and record["cell"]["family"] == "hexagonal P"
    assert record["cell"]["c"] == pytest.approx(5.211, abs=5e-3)


def test_combine_by_hand():
    table = OutcomeTable(
        "lattice_system",
        {"cubic": {"cubic": 7, "none": 3}, "triclinic": {"none": 10}},
    )
    like = table.likelihoods(["cubic", "triclinic"])
    # counts + 0.5 over 10 + 6 outcomes * 0.5 = 13
    assert like[0, OUTCOMES.index("cubic")] == pytest.approx(7.5 / 13)
    assert like[1, OUTCOMES.index("cubic")] == pytest.approx(0.5 / 13)
    p = combine(np.array([[0.2, 0.8]]), ["cubic"], table, ["cubic", "triclinic"])
    # 0.2 * 7.5 / 13 against 0.8 * 0.5 / 13: 1.5 against 0.4
    assert p[0] == pytest.approx([1.5 / 1.9, 0.4 / 1.9])
    with pytest.raises(ValueError, match="allowed: cubic"):
        combine(np.array([[0.5, 0.5]]), ["trigonal"], table, ["cubic", "triclinic"])


def test_the_packaged_table_covers_the_classes():
    for target, classes in (
        ("lattice_system", LATTICE_SYSTEMS),
        ("crystal_system", CRYSTAL_SYSTEMS),
    ):
        table = packaged_table(target)
        assert table is not None and set(table.counts) == set(classes)
        like = table.likelihoods(list(classes))
        assert like.sum(axis=1) == pytest.approx(np.ones(len(classes)))
        low = [list(classes).index(c) for c in ("triclinic", "monoclinic")]
        assert (like[low, OUTCOMES.index("none")] > 0.8).all()


def test_a_large_cubic_cell_on_a_few_lines_does_not_outrank_the_cell_that_explains_them():
    def cell(family, a, c, figure, n_calculated):
        return IndexedCell(family, a, c, 0.05, figure, 5, 5, n_calculated, a)

    # an hcp metal's five lines (Zn, 36-70 deg): hexagonal P indexes them with 6 lines,
    # a 15.6 angstrom cubic I cell with 62 and still a figure above CUBIC_FIGURE_OF_MERIT
    hcp = {
        "cubic I": cell("cubic I", 15.645, 15.645, 80.7, 62),
        "hexagonal P": cell("hexagonal P", 2.664, 4.947, 1018.3, 6),
    }
    assert hcp["cubic I"].figure_of_merit > CUBIC_FIGURE_OF_MERIT
    assert indexing_outcome(hcp)[0] == "hexagonal"
    # a cubic cell predicting no more than twice the best cell's lines keeps the cubic rule
    near = {**hcp, "cubic I": cell("cubic I", 4.0, 4.0, 80.7, 12)}
    assert indexing_outcome(near)[0] == "cubic"
    assert CUBIC_CALCULATED_RATIO == 2.0


def test_a_space_group_classifier_joins_through_its_lattice_systems():
    lattice = packaged_table("lattice_system")
    table = packaged_table("space_group")
    assert table is not None and set(table.counts) == {str(n) for n in range(1, 231)}
    assert table.counts["166"] == lattice.counts["rhombohedral"]
    assert table.counts["164"] == table.counts["194"] == lattice.counts["hexagonal"]
    with pytest.raises(ValueError, match="lattice_system table"):
        space_group_table(packaged_table("crystal_system"))
    groups = ["225", "194", "166", "164", "62", "2"]
    p = np.random.default_rng(3).dirichlet(np.ones(len(groups)), size=len(OUTCOMES))
    joined = combine(p, list(OUTCOMES), table, groups)
    summed = system_probabilities(p, groups, "lattice_system")
    # summing the joined groups per lattice system is the lattice-system join of the sums
    np.testing.assert_allclose(
        system_probabilities(joined, groups, "lattice_system"),
        combine(summed, list(OUTCOMES), lattice, LATTICE_SYSTEMS),
        atol=1e-12,
    )
    # within a lattice system the groups keep their ratio: 194 against 164 (both hexagonal)
    np.testing.assert_allclose(joined[:, 1] / joined[:, 3], p[:, 1] / p[:, 3], rtol=1e-12)


def test_scan_wavelengths_assume_the_copper_doublet_only_for_copper():
    assert scan_wavelengths(1.54056, 1.54439, 0.52) == (1.54056, 1.54439, 0.52, None)
    ka1, ka2, ratio, note = scan_wavelengths(1.5418, None, None)  # a two-column Cu file
    assert (ka1, ka2, ratio) == (1.54056, 1.54439, 0.5) and "assumed the Cu K-alpha" in note
    assert scan_wavelengths(0.70930, None, None) == (0.70930, None, 0.0, None)  # Mo, as given
