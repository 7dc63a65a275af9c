"""Displacement parameters read from CIF text, against values computed by hand here."""

import math

import numpy as np
import pytest
from pymatgen.core import Lattice

from xrdpipe.diffraction import SITE_B_PROPERTY
from xrdpipe.structures.displacement import (
    attach_displacements,
    equivalent_isotropic,
    read_displacements,
)
from xrdpipe.structures.parse import parse_structure

EIGHT_PI2 = 8 * math.pi**2  # 78.95683520871486

# monoclinic P2/m cell; rows: U_iso, B_iso, aniso only, a mixed site (two rows at one
# position), no value ('?'), and a mislabelled beta_ij written as B_ij (implausible)
CIF = """data_test
_cell_length_a 5.0
_cell_length_b 6.0
_cell_length_c 7.0
_cell_angle_alpha 90
_cell_angle_beta 100
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_symmetry_equiv_pos_as_xyz
x,y,z
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
_atom_site_U_iso_or_equiv
_atom_site_B_iso_or_equiv
Na1 Na 0.0 0.0 0.0 1 0.0100(2) ?
Cl1 Cl 0.5 0.5 0.5 1 ? 1.50(3)
K1 K 0.25 0.1 0.3 1 ? ?
Fe1 Fe 0.5 0.0 0.0 0.25 ? 1.0
Co1 Co 0.5 0.0 0.0 0.75 ? 2.0
O1 O 0.0 0.5 0.5 1 ? ?
S1 S 0.0 0.0 0.5 1 ? ?
loop_
_atom_site_aniso_label
_atom_site_aniso_U_11
_atom_site_aniso_U_22
_atom_site_aniso_U_33
_atom_site_aniso_U_12
_atom_site_aniso_U_13
_atom_site_aniso_U_23
K1 0.010 0.020 0.030 0 0.005 0
loop_
_atom_site_aniso_label
_atom_site_aniso_B_11
_atom_site_aniso_B_22
_atom_site_aniso_B_33
_atom_site_aniso_B_12
_atom_site_aniso_B_13
_atom_site_aniso_B_23
S1 0.0030 0.0040 0.0020 0 0 0
"""


def monoclinic_u_eq(u11: float, u22: float, u33: float, u13: float, beta_deg: float) -> float:
    """Fischer & Tillmanns (1988) for a monoclinic cell (unique b):
    U_eq = 1/3 [U22 + (U11 + U33 + 2 U13 cos(beta)) / sin^2(beta)]."""
    beta = math.radians(beta_deg)
    return (u22 + (u11 + u33 + 2 * u13 * math.cos(beta)) / math.sin(beta) ** 2) / 3


def test_equivalent_isotropic_matches_the_monoclinic_formula() -> None:
    lattice = Lattice.from_parameters(5, 6, 7, 90, 100, 90)
    u = np.array([[0.010, 0, 0.005], [0, 0.020, 0], [0.005, 0, 0.030]])
    # by hand: (0.02 + (0.04 - 0.0017365) / 0.9698463) / 3 = (0.02 + 0.0394531) / 3
    expected = monoclinic_u_eq(0.010, 0.020, 0.030, 0.005, 100)
    assert expected == pytest.approx(0.0198177, abs=1e-7)
    assert equivalent_isotropic(u, lattice) == pytest.approx(expected, rel=1e-12)
    # orthogonal cell: the mean of the diagonal
    ortho = Lattice.orthorhombic(3, 4, 5)
    assert equivalent_isotropic(u, ortho) == pytest.approx(0.02, rel=1e-12)


def test_read_displacements_by_hand() -> None:
    table = read_displacements(CIF)
    assert table["Na1"] == pytest.approx(EIGHT_PI2 * 0.0100, rel=1e-12)  # 0.7895684
    assert table["Cl1"] == pytest.approx(1.50, rel=1e-12)
    u_eq = monoclinic_u_eq(0.010, 0.020, 0.030, 0.005, 100)
    assert table["K1"] == pytest.approx(EIGHT_PI2 * u_eq, rel=1e-12)  # 1.5650
    # mixed site: occupancy-weighted mean 0.25 * 1.0 + 0.75 * 2.0 = 1.75 under both labels
    assert table["Fe1"] == pytest.approx(1.75, rel=1e-12)
    assert table["Co1"] == pytest.approx(1.75, rel=1e-12)
    assert "O1" not in table  # no value given
    assert "S1" not in table  # B_eq 0.003 angstrom^2: a mislabelled beta, refused


def test_attach_displacements_puts_b_on_the_parsed_sites() -> None:
    structure = parse_structure(CIF)
    with_b = attach_displacements(structure, CIF)
    assert SITE_B_PROPERTY not in structure.site_properties  # the input is not modified
    labels = [s.label for s in with_b]
    by_label = dict(zip(labels, with_b.site_properties[SITE_B_PROPERTY], strict=True))
    assert by_label["Na1"] == pytest.approx(0.7895684, rel=1e-6)
    assert by_label["Cl1"] == 1.5
    assert math.isnan(by_label["O1"])
    # pymatgen merged Fe1 and Co1 into one mixed site that keeps one of the labels
    mixed = [s for s in with_b if len(s.species) == 2]
    assert len(mixed) == 1
    assert mixed[0].properties[SITE_B_PROPERTY] == pytest.approx(1.75)
    # carried by as_dict (the manifest's structure_json)
    again = type(with_b).from_dict(with_b.as_dict())
    np.testing.assert_array_equal(
        again.site_properties[SITE_B_PROPERTY], with_b.site_properties[SITE_B_PROPERTY]
    )
