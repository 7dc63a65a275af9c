"""Tests of xrdpipe.structures on the real COD sample (265 entries) in the shared folder."""

from __future__ import annotations

import csv
import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.dimensionality import get_dimensionality_larsen
from pymatgen.core import Lattice, Structure

from tests import support
from xrdpipe.config import Filters, SubsetConfig, load_catalog
from xrdpipe.errors import StructureError
from xrdpipe.structures import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    CifEntry,
    analyse_symmetry,
    build_manifest,
    cif_names,
    estimate_site_count,
    manifest_sha256,
    parse_structure,
    read_manifest,
    read_quarantine,
    sample_manifest,
    structural_dimensionality,
    structure_from_json,
    write_manifest,
)
from xrdpipe.structures.filters import (
    check_scattering_factors,
    deduplicate,
    is_organic,
    is_polymer,
    structure_rejection,
)
from xrdpipe.structures.manifest import allocate_strata
from xrdpipe.structures.parse import read_cif_text
from xrdpipe.structures.symmetry import bonded_structure, lattice_system_of

SAMPLE = support.COD_SAMPLE
HUGE_CELL = "2104374"  # about 6,400 sites: pymatgen takes minutes
DUMMY_ATOM = "2010123"  # contains the dummy atom M
OVER_ONE = ("9000087", "9008434", "1101169")  # occupancies summing slightly over 1

pytestmark = pytest.mark.skipif(
    not (SAMPLE / "reference.csv").is_file(), reason=f"no COD sample at {SAMPLE}"
)

PERMISSIVE = SubsetConfig(
    filters=Filters(
        max_sites=500,
        allow_partial_occupancy=True,
        exclude_organic=False,
        exclude_polymers=False,
        deduplicate=False,
    )
)


def cif_path(cod_id: str) -> Path:
    return SAMPLE / "cif" / f"{cod_id}.cif"


def cif_text(cod_id: str) -> str:
    return read_cif_text(cif_path(cod_id))


def make_entry(path: Path) -> CifEntry:
    return CifEntry(
        cod_id=path.stem,
        cif_path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        source=f"mirror:{path.parent}",
        fetched_at="2026-01-01T00:00:00+00:00",
    )


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, str]]:
    with (SAMPLE / "reference.csv").open() as fh:
        return {row["cod_id"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def entries() -> list[CifEntry]:
    return [make_entry(p) for p in sorted((SAMPLE / "cif").glob("*.cif"))]


def report(name: str, result, seconds: float) -> None:
    counts = Counter(zip(result.quarantine["stage"], result.quarantine["reason"], strict=True))
    kept, quarantined = len(result.manifest), len(result.quarantine)
    print(f"\n[{name}] {kept} kept, {quarantined} quarantined, {seconds:.1f} s")
    for (stage, reason), n in sorted(counts.items()):
        print(f"  {stage}/{reason}: {n}")


@pytest.fixture(scope="module")
def permissive_result(entries):
    start = time.perf_counter()
    result = build_manifest(entries, PERMISSIVE)
    report("permissive", result, time.perf_counter() - start)
    return result


@pytest.fixture(scope="module")
def default_result(entries):
    config = load_catalog().subset("hoefer2024").model_copy(update={"sample_size": None})
    start = time.perf_counter()
    result = build_manifest(entries, config)
    report("hoefer2024 filters", result, time.perf_counter() - start)
    return result


# --- parse -----------------------------------------------------------------------------


def test_site_bound_is_an_upper_bound_and_exact_on_simple_entries(reference):
    for cod_id in ("2100456", "9008488", "1000054", "2019541", "5000215", "1000000", "1000023"):
        structure = parse_structure(cif_path(cod_id))
        bound = estimate_site_count(cif_text(cod_id))
        assert len(structure) == int(reference[cod_id]["n_sites"])
        assert bound >= len(structure), cod_id
    # Ordered entries without disorder: the bound is the count.
    for cod_id, n_sites in (("2100456", 2), ("9008488", 2), ("2019541", 12), ("5000215", 6)):
        assert estimate_site_count(cif_text(cod_id)) == n_sites


def test_site_bound_never_below_reference_on_whole_sample(reference):
    under = {}
    exact = 0
    for cod_id, row in reference.items():
        bound = estimate_site_count(cif_text(cod_id))
        exact += bound == int(row["n_sites"])
        if bound < int(row["n_sites"]):
            under[cod_id] = (bound, row["n_sites"])
    assert under == {}
    assert exact >= 200  # 217 of 265 with pymatgen 2026.10
    over_500 = {c for c in reference if estimate_site_count(cif_text(c)) > 500}
    assert over_500 == {c for c, row in reference.items() if int(row["n_sites"]) > 500}


def test_huge_cell_is_rejected_by_the_bound_fast():
    text = cif_text(HUGE_CELL)
    start = time.perf_counter()
    bound = estimate_site_count(text)
    assert time.perf_counter() - start < 1.0
    assert bound >= 6400
    entry = make_entry(cif_path(HUGE_CELL))
    start = time.perf_counter()
    result = build_manifest([entry], PERMISSIVE)
    assert time.perf_counter() - start < 1.0
    row = result.quarantine.iloc[0]
    assert (row["stage"], row["reason"]) == ("size", "too_many_sites")
    assert str(bound) in row["detail"]


def test_site_bound_without_symop_loop_uses_space_group():
    text = """data_nacl
_symmetry_space_group_name_H-M 'F m -3 m'
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 0 0 0
Cl1 0.5 0.5 0.5
"""
    assert estimate_site_count(text) == 8
    assert len(parse_structure(text)) == 8
    assert estimate_site_count("data_empty\n_cell_length_a 1\n") == 0


def test_multi_block_uses_first_block_with_atoms():
    one = cif_text("2100456")
    text = "data_global\n_journal_name_full 'X'\n" + one + "\n" + cif_text("1000054")
    assert estimate_site_count(text) == 2


@pytest.mark.parametrize("cod_id", OVER_ONE)
def test_occupancy_over_one_parses_with_tolerance(cod_id, reference):
    structure = parse_structure(cif_path(cod_id))
    assert len(structure) == int(reference[cod_id]["n_sites"])
    with pytest.raises(StructureError) as info:
        parse_structure(cif_text(cod_id), occupancy_tolerance=1.0)
    assert (info.value.stage, info.value.reason) == ("parse", "no_structure")
    assert "occupanc" in info.value.detail.lower()


def test_unparseable_cif_raises_structure_error():
    with pytest.raises(StructureError) as info:
        parse_structure("data_x\n_cell_length_a 3\n")
    assert info.value.stage == "parse"
    assert info.value.reason in ("no_structure", "unparseable_cif")


def test_cif_names_find_polymers():
    names = cif_names(cif_text("2000135"))
    assert names == ["catena-(dabconium tris(phosphato)-zinc)"]
    assert is_polymer(names)
    assert not is_polymer(cif_names(cif_text("2100456")))


# --- symmetry --------------------------------------------------------------------------


def test_trigonal_lattice_systems_on_real_entries(reference):
    for cod_id, lattice_system in (
        ("1000054", "hexagonal"),  # P-3m1
        ("1100015", "hexagonal"),  # P3_112
        ("2019541", "rhombohedral"),  # R-3m
        ("2011767", "rhombohedral"),  # R-3c
    ):
        info = analyse_symmetry(parse_structure(cif_path(cod_id)))
        assert info.crystal_system == "trigonal"
        assert info.space_group_number == int(reference[cod_id]["sg_number"])
        assert info.lattice_system == lattice_system
    info = analyse_symmetry(parse_structure(cif_path("9008488")))  # P6_3/mmc
    assert (info.crystal_system, info.lattice_system) == ("hexagonal", "hexagonal")
    assert lattice_system_of("cubic", "Fm-3m") == "cubic"
    with pytest.raises(ValueError, match="'trigonalish'"):
        lattice_system_of("trigonalish", "R-3")


def test_dimensionality_matches_pymatgen_larsen():
    # Layered, chain, molecular and framework entries of the sample.
    checked = Counter()
    for cod_id in ("2100456", "9008488", "1000054", "2019541", "1000000", "1000023", "2003120"):
        structure = parse_structure(cif_path(cod_id))
        dim, reason = structural_dimensionality(structure)
        assert reason is None
        assert dim == get_dimensionality_larsen(bonded_structure(structure)), cod_id
        checked[dim] += 1
    assert len(checked) >= 2
    # Rock salt is a 3D framework; an isolated-atom lattice with long spacing is 0D.
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )
    assert structural_dimensionality(nacl) == (3, None)
    argon = Structure(Lattice.cubic(6.0), ["Ar"], [[0, 0, 0]])
    assert structural_dimensionality(argon) == (0, None)


# --- filters ---------------------------------------------------------------------------


def test_dummy_atom_is_quarantined_for_scattering_factors(entries):
    entry = next(e for e in entries if e.cod_id == DUMMY_ATOM)
    result = build_manifest([entry], PERMISSIVE)
    assert result.manifest.empty
    row = result.quarantine.iloc[0]
    assert (row["stage"], row["reason"]) == ("filter", "no_scattering_factors")
    assert "'M'" in row["detail"]
    assert check_scattering_factors(["Fe", "O"]) is None
    assert check_scattering_factors(["X"]) == "no_scattering_factors"


def test_filter_rules_name_the_value():
    assert is_organic(["C", "H", "N"]) and not is_organic(["C", "O", "Ca"])
    structure = parse_structure(cif_path("2100456"))
    strict = Filters(excluded_elements=tuple(structure.composition.chemical_system.split("-")))
    reason, detail = structure_rejection(structure, [], strict)
    assert reason == "element_excluded"
    assert structure.composition.elements[0].symbol in detail
    allowed = Filters(allowed_elements=("Fe",))
    assert structure_rejection(structure, [], allowed)[0] == "element_not_allowed"


def test_deduplicate_keeps_lowest_numeric_id():
    df = pd.DataFrame(
        {
            "cod_id": ["900", "1000", "80"],
            "reduced_formula": ["NaCl", "NaCl", "NaCl"],
            "space_group_number": [225, 225, 221],
            "source": ["s"] * 3,
        }
    )
    kept, dropped = deduplicate(df)
    assert sorted(kept["cod_id"]) == ["80", "900"]
    assert dropped["cod_id"].tolist() == ["1000"]
    assert dropped["kept_cod_id"].tolist() == ["900"]


# --- manifest --------------------------------------------------------------------------


def test_full_sample_permissive_matches_reference(permissive_result, reference):
    manifest, quarantine = permissive_result.manifest, permissive_result.quarantine
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert list(quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert len(manifest) + len(quarantine) == len(reference)
    parseable_small = {
        c for c, row in reference.items() if int(row["n_sites"]) <= 500 and c != DUMMY_ATOM
    }
    assert set(manifest["cod_id"]) == parseable_small
    for row in manifest.itertuples(index=False):
        ref = reference[row.cod_id]
        assert row.crystal_system == ref["crystal_system"], row.cod_id
        assert row.space_group_number == int(ref["sg_number"]), row.cod_id
        assert row.n_sites == int(ref["n_sites"]), row.cod_id
        assert row.has_partial_occupancy == (ref["has_partial_occupancy"] == "True"), row.cod_id
    counts = Counter(zip(quarantine["stage"], quarantine["reason"], strict=True))
    assert counts == {("size", "too_many_sites"): 14, ("filter", "no_scattering_factors"): 1}
    assert manifest["cod_id"].astype(int).is_monotonic_increasing
    assert manifest["dimensionality"].notna().sum() == len(manifest)


def test_full_sample_default_filters(default_result, reference):
    manifest, quarantine = default_result.manifest, default_result.quarantine
    counts = Counter(zip(quarantine["stage"], quarantine["reason"], strict=True))
    assert counts == {
        ("size", "too_many_sites"): 14,
        ("filter", "partial_occupancy"): 47,
        ("filter", "organic"): 70,
        ("filter", "polymer"): 2,
        ("dedupe", "duplicate"): 3,
    }
    # README: 132 inorganic, ordered, <= 500 sites; 3 of them duplicate a lower id.
    assert len(manifest) == 129
    assert not manifest["has_partial_occupancy"].any()
    assert not manifest["elements"].str.split(",").map(lambda e: "C" in e and "H" in e).any()
    assert manifest.groupby(["reduced_formula", "space_group_number"]).size().max() == 1
    assert set(manifest["cod_id"]) | set(quarantine["cod_id"]) == set(reference)


def test_manifest_rows_rebuild_structures_exactly(permissive_result):
    manifest = permissive_result.manifest
    for row in manifest.head(20).itertuples(index=False):
        rebuilt = structure_from_json(row.structure_json)
        original = parse_structure(cif_path(row.cod_id))
        np.testing.assert_array_equal(rebuilt.lattice.matrix, original.lattice.matrix)
        np.testing.assert_array_equal(rebuilt.frac_coords, original.frac_coords)

        # pymatgen serialises deuterium as H (the same X-ray scatterer): compare symbols.
        def species(structure):
            return [
                {
                    (sp.symbol, getattr(sp, "oxi_state", None)): occ
                    for sp, occ in site.species.items()
                }
                for site in structure
            ]

        assert species(rebuilt) == species(original)
        assert row.a == pytest.approx(original.lattice.a)


def test_one_bad_entry_never_stops_the_run(tmp_path, entries):
    broken = tmp_path / "1.cif"
    broken.write_text("data_broken\nloop_\n_atom_site_label\n_atom_site_fract_x\nX1\n")
    missing = CifEntry("2", tmp_path / "2.cif", "0" * 64, "mirror:x", "2026-01-01T00:00:00")
    tampered = CifEntry("3", cif_path("2100456"), "0" * 64, "mirror:x", "2026-01-01T00:00:00")
    good = next(e for e in entries if e.cod_id == "2100456")
    result = build_manifest([make_entry(broken), missing, tampered, good], PERMISSIVE)
    assert result.manifest["cod_id"].tolist() == ["2100456"]
    got = {r.cod_id: (r.stage, r.reason) for r in result.quarantine.itertuples()}
    assert got["2"] == ("read", "unreadable_file")
    assert got["3"] == ("read", "sha256_mismatch")
    assert got["1"][0] == "parse"


def test_write_and_read_manifest(tmp_path, default_result):
    path = write_manifest(default_result, tmp_path / "subset")
    assert path.name == "manifest.parquet"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []
    back = read_manifest(tmp_path / "subset")
    pd.testing.assert_frame_equal(back, default_result.manifest)
    quarantine = read_quarantine(tmp_path / "subset")
    pd.testing.assert_frame_equal(quarantine, default_result.quarantine, check_dtype=False)
    assert read_quarantine(tmp_path / "nowhere").empty
    digest = manifest_sha256(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError, match="manifest.parquet"):
        read_manifest(tmp_path / "nowhere")


# --- sampling --------------------------------------------------------------------------


def test_allocate_strata_gives_small_classes_all_they_have():
    rng = np.random.default_rng(0)
    alloc = allocate_strata({"a": 2, "b": 10, "c": 10, "d": 3}, 20, rng)
    assert alloc["a"] == 2 and alloc["d"] == 3
    assert sorted([alloc["b"], alloc["c"]]) == [7, 8]
    assert sum(alloc.values()) == 20
    with pytest.raises(ValueError, match="sample size 30"):
        allocate_strata({"a": 2}, 30, rng)


def test_stratified_sample_is_deterministic_and_balanced(permissive_result):
    manifest = permissive_result.manifest
    first = sample_manifest(manifest, 35, "lattice_system", seed=3)
    again = sample_manifest(manifest, 35, "lattice_system", seed=3)
    other = sample_manifest(manifest, 35, "lattice_system", seed=4)
    assert first["cod_id"].tolist() == again["cod_id"].tolist()
    assert first["cod_id"].tolist() != other["cod_id"].tolist()
    assert first["lattice_system"].value_counts().to_dict() == {
        name: 5 for name in manifest["lattice_system"].unique()
    }
    # Tetragonal has 14 entries: with 100 drawn over 7 classes it gives all 14.
    big = sample_manifest(manifest, 100, "crystal_system", seed=0)
    per_class = big["crystal_system"].value_counts()
    assert per_class["tetragonal"] == 14
    assert per_class.drop("tetragonal").max() - per_class.drop("tetragonal").min() <= 1
    plain = sample_manifest(manifest, 10, None, seed=1)
    assert len(plain) == 10 and plain["cod_id"].astype(int).is_monotonic_increasing
    assert len(sample_manifest(manifest, None, None, seed=1)) == len(manifest)


def test_build_manifest_reports_progress_and_does_not_sample(entries, permissive_result):
    subset = entries[:40]
    config = PERMISSIVE.model_copy(
        update={"sample_size": 12, "stratify_by": "crystal_system", "seed": 11}
    )
    calls = []
    result = build_manifest(subset, config, progress=lambda done, total: calls.append(done))
    assert calls == list(range(1, 41))
    ids = {e.cod_id for e in subset}
    quarantined = permissive_result.quarantine["cod_id"]
    assert set(result.quarantine["cod_id"]) == set(quarantined[quarantined.isin(ids)])
    assert len(result.manifest) + len(result.quarantine) == 40
    sampled = sample_manifest(result.manifest, 12, "crystal_system", seed=11)
    assert len(sampled) == 12
    assert set(sampled["cod_id"]) <= set(result.manifest["cod_id"])
