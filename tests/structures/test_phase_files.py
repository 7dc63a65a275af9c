"""A lab's phase set from CIF files with any names."""

from __future__ import annotations

import shutil

import pytest

from tests.support import CIF_DIR
from xrdpipe.errors import ConfigError
from xrdpipe.structures.phase_files import (
    discover_phase_files,
    is_material_id,
    material_slug,
    material_sort_key,
)


def test_slugs_are_safe_names_for_files_and_mlflow_keys():
    assert material_slug("La(OH)3") == "La_OH_3"
    assert material_slug("NiO") == "NiO"
    assert material_slug("Bi2O3 (alpha)") == "Bi2O3_alpha"
    assert material_slug("../../etc/passwd") == "etc_passwd"
    assert material_slug("α") == "phase"
    assert is_material_id("La_OH_3") and is_material_id("1000054")
    assert not is_material_id("../x") and not is_material_id("La(OH)3") and not is_material_id("")


def test_ids_sort_cod_numbers_first_then_names():
    ids = ["9008488", "NiO", "1000054", "Bi2O3", "10"]
    assert sorted(ids, key=material_sort_key) == ["10", "1000054", "9008488", "Bi2O3", "NiO"]


def test_a_folder_of_oddly_named_cifs_becomes_a_phase_set(tmp_path):
    shutil.copy(CIF_DIR / "1000054.cif", tmp_path / "La(OH)3.cif")  # name says nothing of COD
    shutil.copy(CIF_DIR / "1009031.cif", tmp_path / "NiO.CIF")
    shutil.copy(CIF_DIR / "2100862.cif", tmp_path / "La[OH]3.cif")  # collides after slugging
    (tmp_path / "notes.txt").write_text("not a phase")
    phases = discover_phase_files(tmp_path)
    assert [(p.material_id, p.name) for p in phases] == [
        ("La_OH_3", "La(OH)3"),
        ("La_OH_3-2", "La[OH]3"),
        ("NiO", "NiO"),
    ]
    declared = {p.name: p.cod_id for p in phases}
    assert declared["La(OH)3"] == "1000054" or declared["La(OH)3"] is None  # provenance only


def test_bad_phase_sources_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        discover_phase_files(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no .cif file"):
        discover_phase_files(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"not a \.cif file"):
        discover_phase_files([tmp_path / "a.txt"])
