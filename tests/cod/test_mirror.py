"""Local COD mirrors: flat, rsync layout, and the CIFs of the ``crystals`` package."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from xrdpipe.cod.cache import LEDGER_NAME
from xrdpipe.cod.mirror import CodMirror, cif_header, formula_counts, hill_formula
from xrdpipe.cod.mirror import package_mirror_dir as crystals_dir
from xrdpipe.config import CodQuery
from xrdpipe.errors import CodError, InvalidCodIdError


@pytest.fixture(scope="module")
def sample_mirror(cod_sample: Path) -> CodMirror:
    return CodMirror(cod_sample / "cif")


@pytest.fixture(scope="module")
def index(cod_sample: Path) -> dict[str, dict]:
    return {row["file"]: row for row in json.loads((cod_sample / "index.json").read_text())}


def elements(formula: str | None) -> set[str]:
    return set(re.findall(r"[A-Z][a-z]?", formula or ""))


# -- reading headers ---------------------------------------------------------------------


def test_hill_formula_and_counts() -> None:
    assert hill_formula("Na Cl") == "Cl Na"
    assert hill_formula("O H2 C2") == "C2 H2 O"
    assert hill_formula("Si O2") == "O2 Si"
    assert formula_counts("Ca (Al1.94 Fe.06) Si2 O10 D4") == {
        "Ca": 1.0, "Al": 1.94, "Fe": 0.06, "Si": 2.0, "O": 10.0, "D": 4.0,
    }  # fmt: skip
    assert formula_counts("(NH4)2 S O4") == {"N": 2.0, "H": 8.0, "S": 1.0, "O": 4.0}
    assert formula_counts("?") is None


def test_cif_header_reads_quoted_semicolon_and_next_line_values() -> None:
    text = (
        "data_1234567\n_chemical_formula_sum\n;\nFe2\n O3\n;\n"
        "_symmetry_space_group_name_H-M   'R -3 c :H'\n_cell_length_a 5.0356(1)\n"
        "_chemical_name_mineral\n'O'Keeffe's stone'\n"
        "loop_\n_publ_author_name\n'Smith, J.'\n'Doe, A.'\n"
        "loop_\n_atom_site_label\n_atom_site_fract_x\nFe1 0.0\n_cell_volume 302.7\n"
    )
    header = cif_header(text)
    assert formula_counts(header["_chemical_formula_sum"]) == {"Fe": 2.0, "O": 3.0}
    assert header["_symmetry_space_group_name_h-m"] == "R -3 c :H"
    assert header["_cell_length_a"] == "5.0356(1)"
    assert header["_chemical_name_mineral"] == "O'Keeffe's stone"
    assert "Doe, A." in header["_publ_author_name"]
    assert header["_cell_volume"] == "302.7" and "_atom_site_label" not in header


# -- flat layout -------------------------------------------------------------------------


def test_flat_mirror_lists_every_sample_cif(sample_mirror: CodMirror, index: dict) -> None:
    entries = sample_mirror.entries()
    assert set(entries) == set(index) and len(entries) == 265
    assert entries["1000023"].name == "1000023.cif"
    assert sample_mirror.duplicates == {} and sample_mirror.unidentified == ()


def test_flat_mirror_records_agree_with_cod_index(sample_mirror: CodMirror, index: dict) -> None:
    record = sample_mirror.record("1000023")
    assert record.formula == "Cu3 Fe4 O24 P6" and record.n_elements == 4
    assert record.a == pytest.approx(7.9296) and record.volume == pytest.approx(406.34)
    assert record.space_group == "P -1"
    agree = sum(
        elements(sample_mirror.record(i).formula) == elements(row["formula"])
        for i, row in index.items()
    )
    assert agree >= 263  # the index itself misreads two multi-line formulas


def test_mirror_search_by_elements(sample_mirror: CodMirror, index: dict) -> None:
    found = sample_mirror.search(CodQuery(elements=("Fe",), exclude_elements=("C",)))
    assert found and all("Fe" in elements(r.formula) for r in found)
    assert all("C" not in elements(r.formula) for r in found)
    expected = {
        i for i, row in index.items()
        if "Fe" in elements(row["formula"]) and "C" not in elements(row["formula"])
    }  # fmt: skip
    assert {r.cod_id for r in found} == expected


def test_mirror_search_counts_cell_formula_ids_text(sample_mirror: CodMirror) -> None:
    binaries = sample_mirror.search(CodQuery(min_elements=2, max_elements=2))
    assert binaries and all(r.n_elements == 2 for r in binaries)
    small = sample_mirror.search(CodQuery(cell={"vmax": 50.0}))
    assert small and all(r.volume is not None and r.volume <= 50.0 for r in small)
    cubic_a = sample_mirror.search(CodQuery(cell={"amin": 5.0, "amax": 5.5, "alphamin": 89.9}))
    assert all(5.0 <= r.a <= 5.5 and r.alpha >= 89.9 for r in cubic_a)  # type: ignore[operator]
    by_id = sample_mirror.search(CodQuery(ids=("1000035", "1000023", "9999999")))
    assert [r.cod_id for r in by_id] == ["1000023", "1000035"]
    same = sample_mirror.search(CodQuery(formula="P6 O24 Fe4 Cu3"))
    assert "1000023" in {r.cod_id for r in same}
    assert all(formula_counts(r.formula) == formula_counts("Cu3 Fe4 O24 P6") for r in same)
    augite = sample_mirror.search(CodQuery(text="augite"))
    assert "1000035" in {r.cod_id for r in augite}


# -- rsync layout ------------------------------------------------------------------------


def test_rsync_layout_reads_ids_from_cod_database_code(tmp_path: Path, cod_sample: Path) -> None:
    deep = tmp_path / "cif" / "1" / "00" / "00"
    deep.mkdir(parents=True)
    ids = ["1000023", "1000039", "1000054"]
    for n, cod_id in enumerate(ids):
        source = cod_sample / "cif" / f"{cod_id}.cif"
        assert "_cod_database_code" in source.read_text(errors="replace")
        shutil.copy(source, deep / f"entry-{n}.cif")
    shutil.copy(cod_sample / "cif" / "1000023.cif", deep / "1000023.cif")  # the same id twice
    # an older COD file without _cod_database_code: the id comes from its data_ block
    augite = cod_sample / "cif" / "1000035.cif"
    assert "_cod_database_code" not in augite.read_text(errors="replace")
    shutil.copy(augite, tmp_path / "cif" / "1" / "augite.cif")
    (deep / "notes.cif").write_text("# not an entry\n")
    mirror = CodMirror(tmp_path)
    entries = mirror.entries()
    assert list(entries) == ["1000023", "1000035", "1000039", "1000054"]
    assert entries["1000023"] == deep / "1000023.cif"  # first by sorted path
    assert entries["1000039"] == deep / "entry-1.cif"
    assert mirror.duplicates == {"1000023": (deep / "1000023.cif", deep / "entry-0.cif")}
    assert mirror.unidentified == (deep / "notes.cif",)
    assert mirror.record("1000035").mineral == "Augite"
    assert [r.cod_id for r in mirror.search(CodQuery(text="augite"))] == ["1000035"]


# -- copying into a CIF folder -----------------------------------------------------------


def test_copy_into_is_atomic_ledgered_and_resumes(sample_mirror: CodMirror, tmp_path: Path) -> None:
    ids = ["1000023", "1000035", "9999999"]
    seen: list[str] = []
    first = sample_mirror.copy_into(ids, tmp_path, progress=lambda r: seen.append(r.status))
    assert [r.status for r in first] == ["downloaded", "downloaded", "failed"]
    assert seen == ["downloaded", "downloaded", "failed"]
    assert "not found in mirror" in (first[2].error or "")
    original = sample_mirror.entries()["1000023"]
    assert first[0].sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    assert first[0].source_url == original.resolve().as_uri()
    ledger = [json.loads(x) for x in (tmp_path / LEDGER_NAME).read_text().splitlines()]
    assert [row["cod_id"] for row in ledger] == ["1000023", "1000035"]

    second = sample_mirror.copy_into(ids[:2], tmp_path)
    assert [r.status for r in second] == ["cached", "cached"]
    (tmp_path / "1000035.cif").write_text("data_x\n")  # edited: sha256 no longer matches
    third = sample_mirror.copy_into(ids[:2], tmp_path)
    assert [r.status for r in third] == ["cached", "downloaded"]
    assert (tmp_path / "1000035.cif").read_bytes() == sample_mirror.entries()[
        "1000035"
    ].read_bytes()


def test_copy_into_refuses_bad_ids_before_copying(sample_mirror: CodMirror, tmp_path: Path) -> None:
    with pytest.raises(InvalidCodIdError, match=r"\.\./1000000"):
        sample_mirror.copy_into(["1000023", "../1000000"], tmp_path)
    assert not (tmp_path / "1000023.cif").exists()


def test_mirror_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CodError, match="not a directory"):
        CodMirror(tmp_path / "missing")


# -- the crystals package ----------------------------------------------------------------


def test_crystals_package_is_a_mirror_with_one_duplicate(tmp_path: Path) -> None:
    mirror = CodMirror(crystals_dir())
    entries = mirror.entries()
    n_files = len(list(crystals_dir().glob("*.cif")))
    duplicates = mirror.duplicates
    assert duplicates, "crystals ships some COD ids twice"
    assert len(entries) == n_files - sum(len(p) - 1 for p in duplicates.values())
    for cod_id, paths in duplicates.items():
        assert entries[cod_id] == paths[0] and list(paths) == sorted(paths)
    iron = mirror.search(CodQuery(elements=("Fe",), max_elements=1))
    assert [r.formula for r in iron] == ["Fe"] and iron[0].space_group == "I m -3 m"
    copied = mirror.copy_into([iron[0].cod_id], tmp_path)
    assert copied[0].status == "downloaded" and copied[0].path is not None
    assert copied[0].path.name == f"{iron[0].cod_id}.cif"
