"""Space groups to crystal and lattice systems, against pymatgen's space-group tables."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.symmetry.groups import SpaceGroup

from xrdpipe.config import CRYSTAL_SYSTEMS, LATTICE_SYSTEMS
from xrdpipe.structures.hierarchy import system_of_space_group, system_probabilities
from xrdpipe.structures.symmetry import lattice_system_of


def test_every_group_has_pymatgens_crystal_system_and_the_symbols_lattice() -> None:
    for n in range(1, 231):
        group = SpaceGroup.from_int_number(n)
        crystal_system = group.crystal_system
        assert system_of_space_group(n) == crystal_system, n
        lattice = lattice_system_of(crystal_system, group.symbol)
        assert system_of_space_group(str(n), "lattice_system") == lattice, n
    # by hand: R-3m is rhombohedral, P-3m1 hexagonal, P6_3/mmc hexagonal, Fm-3m cubic
    assert [system_of_space_group(n, "lattice_system") for n in (166, 164, 194, 225)] == [
        "rhombohedral",
        "hexagonal",
        "hexagonal",
        "cubic",
    ]
    assert system_of_space_group(164) == "trigonal"


@pytest.mark.parametrize("bad", [0, 231, "P1", None])
def test_a_bad_group_or_system_is_named(bad) -> None:
    with pytest.raises(ValueError, match="1 to 230"):
        system_of_space_group(bad)
    with pytest.raises(ValueError, match="crystal_system"):
        system_of_space_group(225, "bravais")


def test_probabilities_are_summed_per_system_by_hand() -> None:
    groups = ["225", "194", "166", "164", "62"]
    p = np.array([[0.1, 0.2, 0.3, 0.15, 0.25], [0.0, 0.0, 0.0, 1.0, 0.0]])
    crystal = system_probabilities(p, groups)
    lattice = system_probabilities(p, groups, "lattice_system")
    c = dict(zip(CRYSTAL_SYSTEMS, crystal[0], strict=True))
    lat = dict(zip(LATTICE_SYSTEMS, lattice[0], strict=True))
    assert c["cubic"] == pytest.approx(0.1) and c["hexagonal"] == pytest.approx(0.2)
    assert c["trigonal"] == pytest.approx(0.45) and c["orthorhombic"] == pytest.approx(0.25)
    assert lat["rhombohedral"] == pytest.approx(0.3) and lat["hexagonal"] == pytest.approx(0.35)
    assert lattice[1, LATTICE_SYSTEMS.index("hexagonal")] == pytest.approx(1.0)
    np.testing.assert_allclose(crystal.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="len\\(groups\\)=5"):
        system_probabilities(p[:, :4], groups)
