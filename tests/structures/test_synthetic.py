"""The synthetic structure source: determinism, quarantine, labels against spglib, balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import spglib
from pydantic import ValidationError
from pymatgen.core import Lattice, Structure
from scipy.stats import chisquare

from xrdpipe.structures.manifest import MANIFEST_COLUMNS, sample_manifest, structure_from_json
from xrdpipe.structures.symmetry import wyckoff_letters
from xrdpipe.structures.synthetic import (
    SYNTHETIC_COLUMNS,
    SyntheticConfig,
    SyntheticDraw,
    SyntheticDrawFailure,
    assign_wyckoff_sites,
    draw_parameters,
    material_id,
    structure_seed,
    synthesize_structure,
)
from xrdpipe.structures.wyckoff import shortest_distance_violation

SMALL = SyntheticConfig(n_structures=40, max_atoms=24)

# International Tables: the last space-group number of each crystal system, written out.
LAST_OF_SYSTEM = [
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
]


def crystal_system_of(number: int) -> str:
    return next(name for last, name in LAST_OF_SYSTEM if number <= last)


@pytest.fixture(scope="module")
def drawn() -> list[tuple[dict | None, dict | None]]:
    return [synthesize_structure(i, 11, SMALL, 0.1, 5.0) for i in range(SMALL.n_structures)]


def test_same_seed_same_rows_and_other_seed_other_structures(drawn):
    again = [synthesize_structure(i, 11, SMALL, 0.1, 5.0) for i in range(10)]
    assert again == drawn[:10]  # every column, structure_json included
    other = [synthesize_structure(i, 12, SMALL, 0.1, 5.0) for i in range(10)]
    first = [r[0]["structure_json"] for r in drawn[:10] if r[0] is not None]
    second = [r[0]["structure_json"] for r in other if r[0] is not None]
    assert not set(first) & set(second)


def test_a_structure_depends_on_its_own_index_only():
    # Index 7 drawn alone equals index 7 drawn after 0..6: no state carries over.
    alone = synthesize_structure(7, 11, SMALL, 0.1, 5.0)
    for i in range(7):
        synthesize_structure(i, 11, SMALL, 0.1, 5.0)
    assert synthesize_structure(7, 11, SMALL, 0.1, 5.0) == alone
    seeds = {structure_seed(11, i) for i in range(1000)}
    assert len(seeds) == 1000
    assert structure_seed(11, 5) == structure_seed(11, 5) != structure_seed(12, 5)


def test_rows_have_manifest_and_generation_columns(drawn):
    kept = [row for row, _ in drawn if row is not None]
    assert len(kept) >= 0.6 * len(drawn)
    for row in kept:
        assert set(MANIFEST_COLUMNS) | set(SYNTHETIC_COLUMNS) == set(row)
        assert row["cod_id"] == material_id(row["synthetic_index"])
        assert 1 <= row["n_elements"] <= 5
        assert row["n_sites"] <= SMALL.max_atoms
        assert set(row["elements"].split(",")) <= set(SMALL.elements)
        # numIons of the draw is the composition of the structure.
        structure = structure_from_json(row["structure_json"])
        counts = structure.composition.get_el_amt_dict()
        species = row["species"].split(",")
        num_ions = [int(n) for n in row["num_ions"].split(",")]
        assert {el: float(n) for el, n in zip(species, num_ions, strict=True)} == counts
        assert shortest_distance_violation(structure, SMALL.distance_factor) is None


def test_labels_agree_with_spglib_on_the_generated_structures(drawn):
    kept = [row for row, _ in drawn if row is not None]
    for row in kept:
        structure = structure_from_json(row["structure_json"])
        cell = (
            structure.lattice.matrix,
            structure.frac_coords,
            [site.specie.Z for site in structure],
        )
        dataset = spglib.get_symmetry_dataset(cell, symprec=0.1, angle_tolerance=5.0)
        assert row["space_group_number"] == dataset.number
        assert row["crystal_system"] == crystal_system_of(dataset.number)
        if row["crystal_system"] == "trigonal":
            expected = "rhombohedral" if dataset.international.startswith("R") else "hexagonal"
        else:
            expected = row["crystal_system"]
        assert row["lattice_system"] == expected
        assert row["symmetry_changed"] == (dataset.number != row["requested_space_group"])
        letters = {
            int(e): w for e, w in zip(dataset.equivalent_atoms, dataset.wyckoffs, strict=True)
        }
        assert row["spglib_wyckoff_letters"] == ",".join(sorted(letters.values()))


def test_an_impossible_composition_is_quarantined_with_its_reason():
    # Fm-3m (225) has no 3-fold position; 4a has no free coordinates, so it holds one orbit.
    for sites, expected in [((("3a",),), "no Wyckoff position 3a"), ((("4a", "4a"),), "one orbit")]:
        draw = SyntheticDraw(7, 123, 225, "cubic", ("Na",), sites, 4, 1.1)
        row, rejected = synthesize_structure(7, 0, SMALL, 0.1, 5.0, draw=draw)
        assert row is None
        assert rejected["cod_id"] == "synth-00000007"
        assert (rejected["stage"], rejected["reason"]) == ("generate", "incompatible_composition")
        assert expected in rejected["detail"] and "225" in rejected["detail"]
        assert rejected["requested_space_group"] == 225 and rejected["generation_seed"] == 123


def test_an_unplaceable_draw_is_quarantined_and_a_changed_group_can_be_refused():
    # Three 6-atom orbits on the threefold axis of R3c (6a = 0,0,z): 18 atoms on one line
    # of length c <= 2 a cannot be 0.75 x 2 x r_cov apart for these volumes.
    draw = SyntheticDraw(3, 5, 161, "trigonal", ("Zr", "Pr", "Nb"), (("6a",),) * 3, 18, 1.0)
    row, rejected = synthesize_structure(3, 0, SMALL, 0.1, 5.0, draw=draw)
    assert row is None and rejected["reason"] == "placement_failed"
    assert rejected["stage"] == "generate"
    # Na on 4a and Cl on 4b of Fm-3m is rock salt: spglib finds 225, as requested; in
    # F432 (209) the same positions make rock salt too, so spglib finds 225, not 209.
    salt = SyntheticDraw(1, 9, 225, "cubic", ("Na", "Cl"), (("4a",), ("4b",)), 8, 1.1)
    row, _ = synthesize_structure(1, 0, SMALL, 0.1, 5.0, draw=salt)
    assert (row["space_group_number"], row["symmetry_changed"]) == (225, False)
    assert row["spglib_wyckoff_letters"] == "a,b"
    f432 = SyntheticDraw(2, 9, 209, "cubic", ("Na", "Cl"), (("4a",), ("4b",)), 8, 1.1)
    row, _ = synthesize_structure(2, 0, SMALL, 0.1, 5.0, draw=f432)
    assert (row["space_group_number"], row["symmetry_changed"]) == (225, True)
    strict = SMALL.model_copy(update={"keep_symmetry_changes": False})
    row, rejected = synthesize_structure(2, 0, strict, 0.1, 5.0, draw=f432)
    assert row is None
    assert (rejected["stage"], rejected["reason"]) == ("symmetry", "symmetry_changed")
    assert "requested space group 209, spglib finds 225" in rejected["detail"]


def test_wyckoff_assignment_fails_when_the_elements_do_not_fit():
    rng = np.random.default_rng(0)
    # Ia-3d (230): the smallest orbit has 16 atoms.
    assert assign_wyckoff_sites(230, 1, 4, 15, rng) is None
    sites = assign_wyckoff_sites(230, 1, 4, 16, rng)
    assert sites == (("16a",),) or sites == (("16b",),)
    # P1: only 1a, so the target is met exactly.
    sites = assign_wyckoff_sites(1, 3, 10, 100, rng)
    assert sum(len(s) for s in sites) == 10 and all(len(s) >= 1 for s in sites)


def test_shortest_distance_violation_by_hand():
    # Two Na 1.0 A apart; 0.75 x (1.66 + 1.66) = 2.49 A (Cordero covalent radii).
    structure = Structure(Lattice.cubic(10.0), ["Na", "Na"], [[0, 0, 0], [0.1, 0, 0]])
    message = shortest_distance_violation(structure, 0.75)
    assert "at 1.000 A < 0.75" in message and "2.490 A" in message
    apart = Structure(Lattice.cubic(10.0), ["Na", "Na"], [[0, 0, 0], [0.5, 0, 0]])
    assert shortest_distance_violation(apart, 0.75) is None


def test_space_groups_are_balanced_over_crystal_systems_and_within_cubic():
    config = SyntheticConfig()
    draws = []
    for i in range(3500):
        try:
            draws.append(draw_parameters(i, 3, config))
        except Exception as exc:  # wyckoff_assignment_failed keeps its draw
            draws.append(exc.draw)
    systems = pd.Series([d.crystal_system for d in draws]).value_counts()
    assert len(systems) == 7
    assert chisquare(systems.to_numpy()).pvalue > 1e-3
    for d in draws:
        assert crystal_system_of(d.space_group) == d.crystal_system
    cubic = pd.Series([d.space_group for d in draws if d.crystal_system == "cubic"])
    counts = cubic.value_counts().reindex(range(195, 231), fill_value=0)
    assert chisquare(counts.to_numpy()).pvalue > 1e-3
    n_elements = pd.Series([len(d.species) for d in draws]).value_counts().sort_index()
    weights = np.array(config.element_count_weights)
    expected = weights / weights.sum() * len(draws)
    assert chisquare(n_elements.to_numpy(), expected).pvalue > 1e-3
    targets = np.array([d.target_atoms for d in draws])
    assert targets.min() >= 1 and targets.max() <= config.max_atoms
    # log-uniform on [2, 100]: the median is near sqrt(2 * 101) = 14.2.
    assert 11 <= np.median(targets) <= 17


def test_config_names_bad_values():
    with pytest.raises(ValidationError, match="Xx"):
        SyntheticConfig(elements=("Na", "Xx"))
    with pytest.raises(ValidationError, match="element_count_weights"):
        SyntheticConfig(element_count_weights=(1, 1, 1, 1, 1, 1))
    with pytest.raises(ValidationError, match="min_atoms 50 exceeds max_atoms 10"):
        SyntheticConfig(min_atoms=50, max_atoms=10)
    with pytest.raises(ValidationError, match="extra"):
        SyntheticConfig(n_structure=5)


def test_wyckoff_letters_of_rock_salt():
    salt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    assert wyckoff_letters(salt) == "a,b"


def test_manifest_sorts_cod_ids_numerically_then_other_ids():
    frame = pd.DataFrame({"cod_id": ["synth-00000002", "10", "synth-00000001", "9"]})
    ordered = sample_manifest(frame, None, None, 0)["cod_id"].tolist()
    assert ordered == ["9", "10", "synth-00000001", "synth-00000002"]


def test_balance_over_lattice_systems_gives_rhombohedral_its_seventh():
    config = SyntheticConfig(balance_over="lattice_system")
    r_groups = {146, 148, 155, 160, 161, 166, 167}  # International Tables: the R groups
    groups = []
    for i in range(2100):
        try:
            groups.append(draw_parameters(i, 5, config).space_group)
        except Exception as exc:
            groups.append(exc.draw.space_group)
    lattice = [
        "rhombohedral"
        if g in r_groups
        else "hexagonal"
        if crystal_system_of(g) in ("trigonal", "hexagonal")
        else crystal_system_of(g)
        for g in groups
    ]
    counts = pd.Series(lattice).value_counts()
    assert len(counts) == 7 and chisquare(counts.to_numpy()).pvalue > 1e-3
    rhombohedral = pd.Series([g for g in groups if g in r_groups]).value_counts()
    assert set(rhombohedral.index) == r_groups


def test_primitive_cell_size_bounds_the_primitive_cell_of_every_lattice():
    """Issue 18: with ``cell_size="primitive"`` an R (or F) cell holds 3 (4) primitive cells of
    at most ``max_atoms`` atoms; counted in the conventional cell, R cells were 3x smaller in
    content than P cells of the same target (the few-peak patterns were mostly R)."""
    r_groups = {146, 148, 155, 160, 161, 166, 167}  # International Tables: the R groups
    f_groups = {22, 42, 43, 69, 70, 196, 202, 203, 209, 210, 216, 219, 225, 226, 227, 228}
    shared = {"balance_over": "lattice_system", "min_atoms": 4, "max_atoms": 6}
    rows = {}
    for size in ("conventional", "primitive"):
        config = SyntheticConfig(cell_size=size, element_count_weights=(1.0,), **shared)
        drawn = [synthesize_structure(i, 7, config, 0.1, 5.0)[0] for i in range(120)]
        rows[size] = [r for r in drawn if r is not None]
    assert all(r["n_sites"] <= 6 for r in rows["conventional"])
    centred = 0
    for row in rows["primitive"]:
        structure = structure_from_json(row["structure_json"])
        cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
        _, _, primitive_numbers = spglib.find_primitive(cell, symprec=0.1, angle_tolerance=5.0)
        assert len(primitive_numbers) <= 6, (row["space_group_symbol"], len(primitive_numbers))
        requested = int(row["requested_space_group"])
        if requested in r_groups | f_groups:  # every multiplicity is a multiple of 3 (4)
            points = 3 if requested in r_groups else 4
            assert row["n_sites"] % points == 0 and row["n_sites"] > 6, row["wyckoff_sites"]
            centred += 1
    assert centred >= 5


def test_cell_size_is_dumped_only_when_primitive():
    # Subsets and run fingerprints made before the option dump exactly as before.
    assert "cell_size" not in SyntheticConfig().model_dump(mode="json")
    primitive = SyntheticConfig(cell_size="primitive").model_dump(mode="json")
    assert primitive["cell_size"] == "primitive"
    assert SyntheticConfig.model_validate(primitive).cell_size == "primitive"
    with pytest.raises(ValidationError, match="cell_size"):
        SyntheticConfig(cell_size="reduced")


def _parameters(index: int, config: SyntheticConfig) -> SyntheticDraw:
    """The draw of ``index`` (seed 11), also when its sites do not fit."""
    try:
        return draw_parameters(index, 11, config)
    except SyntheticDrawFailure as failure:
        return failure.draw


def test_pseudo_symmetric_draws_sit_near_the_eighths_and_change_nothing_else():
    # off (the default): dumped as before, no draw pseudo-symmetric, the rows' column False
    assert "pseudo_symmetric_share" not in SyntheticConfig().model_dump(mode="json")
    assert not any(_parameters(i, SMALL).pseudo_symmetric for i in range(40))
    # a share of 0.5 decides each structure on its own stream: about half, deterministic,
    # and steps 1-3 (group, elements, sites, volume) are the draws of the share-0 subset
    half = SMALL.model_copy(update={"pseudo_symmetric_share": 0.5})
    assert half.model_dump(mode="json")["pseudo_symmetry_offset"] == 0.02
    flags = [_parameters(i, half).pseudo_symmetric for i in range(200)]
    assert 70 <= sum(flags) <= 130
    assert flags == [_parameters(i, half).pseudo_symmetric for i in range(200)]
    for i in range(20):
        plain, pseudo = _parameters(i, SMALL), _parameters(i, half)
        assert pseudo.sites == plain.sites and pseudo.volume_factor == plain.volume_factor
    # every structure pseudo-symmetric, offsets of 0.005: each atom's coordinates within
    # 5 sigma of a multiple of 1/8 (outside the hexagonal family, whose operations and
    # fixed sites hold thirds, the Wyckoff operations map eighths onto eighths)
    tight = SMALL.model_copy(
        update={"pseudo_symmetric_share": 1.0, "pseudo_symmetry_offset": 0.005}
    )
    kept = 0
    for i in range(30):
        row, _ = synthesize_structure(i, 11, tight, 0.1, 5.0)
        if row is None or 143 <= row["requested_space_group"] <= 194:
            continue
        kept += 1
        assert row["pseudo_symmetric"] is True
        frac = structure_from_json(row["structure_json"]).frac_coords
        assert np.abs(frac * 8 - np.round(frac * 8)).max() < 8 * 5 * 0.005
    assert kept >= 10
    # the plain generator's coordinates are not near the eighths
    rows = [synthesize_structure(i, 11, SMALL, 0.1, 5.0)[0] for i in range(30)]
    rows = [r for r in rows if r is not None and not 143 <= r["requested_space_group"] <= 194]
    far = [structure_from_json(r["structure_json"]).frac_coords * 8 for r in rows]
    assert all(r["pseudo_symmetric"] is False for r in rows)
    assert np.median([np.abs(f - np.round(f)).max() for f in far]) > 0.3
    with pytest.raises(ValidationError, match="pseudo_symmetric_share"):
        SyntheticConfig(pseudo_symmetric_share=1.5)
