"""A lab's phase set (``source: phases``): CIF files with any names through the fetch stage."""

from __future__ import annotations

import shutil

import pandas as pd

from tests.support import CIF_DIR
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.config.catalog import Filters
from xrdpipe.stages.fetch import fetch_subset


def test_oddly_named_cifs_become_a_phase_set_and_the_broken_one_is_quarantined(tmp_path):
    phases = tmp_path / "lab phases"
    phases.mkdir()
    shutil.copy(CIF_DIR / "1009031.cif", phases / "PdO (tetragonal).cif")
    shutil.copy(CIF_DIR / "2100862.cif", phases / "BaTiO3.cif")
    text = (CIF_DIR / "1000054.cif").read_text()
    cut = text.index("_atom_site_fract_x")
    (phases / "Broken(1).cif").write_text(text[:cut])  # an atom loop without coordinates
    (phases / "not-a-cif.cif").write_text("hello")  # not a CIF at all
    (phases / "README.txt").write_text("ignored: not a .cif")
    subset = SubsetConfig(source="phases", phases=phases, filters=Filters(deduplicate=False))
    settings = Settings(data_dir=tmp_path / "data")

    report = fetch_subset("lab", subset, settings)

    folder = settings.subset_dir("lab")
    manifest = pd.read_parquet(folder / "manifest.parquet")
    quarantine = pd.read_parquet(folder / "quarantine.parquet")
    assert report.source == f"phases:{phases}"
    assert manifest[["cod_id", "phase_name"]].values.tolist() == [
        ["BaTiO3", "BaTiO3"],
        ["PdO_tetragonal", "PdO (tetragonal)"],
    ]
    assert set(manifest["crystal_system"]) == {"cubic", "tetragonal"}
    broken = quarantine.set_index("phase_name")
    assert set(broken.index) == {"Broken(1)", "not-a-cif"}
    assert broken.loc["Broken(1)", "cod_id"] == "Broken_1"
    assert broken.loc["Broken(1)", "stage"] in {"parse", "size"}
    assert broken.loc["not-a-cif", "reason"] == "download_failed"
    assert "not-a-cif.cif" in broken.loc["not-a-cif", "detail"]
    assert (folder / "cif" / "PdO_tetragonal.cif").read_bytes() == (
        CIF_DIR / "1009031.cif"
    ).read_bytes()
    again = fetch_subset("lab", subset, settings)  # a second fetch copies nothing
    assert again.n_cached == 3 and again.n_downloaded == 0  # the broken CIF is kept too


def test_phase_names_reach_the_store_the_model_outputs_and_predict(tmp_path):
    import numpy as np

    from tests.support import TINY_PHASE_PRESET
    from xrdpipe.config import SimulationConfig
    from xrdpipe.patterns.datasets import load_peaks
    from xrdpipe.stages.predict import ModelOutput
    from xrdpipe.stages.simulate import load_manifest, run_simulation
    from xrdpipe.training.phase_fractions import train_phase_fractions

    phases = tmp_path / "phases"
    phases.mkdir()
    shutil.copy(CIF_DIR / "1009031.cif", phases / "PdO (tetragonal).cif")
    shutil.copy(CIF_DIR / "2100862.cif", phases / "BaTiO3.cif")
    sim = SimulationConfig(n_train_strains=6, n_test_strains=3, strain_mode="symmetry")
    subset = SubsetConfig(
        source="phases", phases=phases, filters=Filters(deduplicate=False), simulation=sim
    )
    settings = Settings(data_dir=tmp_path / "data")
    fetch_subset("lab", subset, settings)
    manifest, _ = load_manifest(settings.subset_dir("lab"))
    store = settings.subset_dir("lab") / "patterns.zarr"
    run_simulation(manifest, store, subset)

    materials = load_peaks(store, "reference").materials
    assert dict(zip(materials["cod_id"], materials["phase_name"], strict=True)) == {
        "BaTiO3": "BaTiO3",
        "PdO_tetragonal": "PdO (tetragonal)",
    }
    preset = TINY_PHASE_PRESET.model_copy(update={"epochs": 1, "n_test": 32, "n_validation": 32})
    result = train_phase_fractions(store, subset, preset, 2, 2, seed=0, progress=False)
    names = dict(zip(materials["cod_id"], materials["phase_name"], strict=True))
    assert result.config["data"]["names"] == [names[m] for m in result.materials]

    out = ModelOutput(
        "m", "phase-fractions", "phase-fractions", result.materials, result.formulas,
        np.array([0.7, 0.3]), np.zeros(2), 1, None, result.config["data"]["names"],
    )  # fmt: skip
    assert [out.display(i) for i in range(2)] == result.config["data"]["names"]
