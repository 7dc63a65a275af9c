"""A lab's set-up in one option: ``--phases DIR --instrument SCAN`` writes one catalog entry with
the lab defaults and the scan's instrument, and fetch and simulate run on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.readers.test_formats import KA1, KA2, raw_v3
from tests.support import CIF_DIR
from xrdpipe.cli import app
from xrdpipe.config import Settings, load_catalog
from xrdpipe.config.phase_set import LAB_PROFILE, PHASE_SET_PRESET, phase_set_subset
from xrdpipe.errors import ConfigError
from xrdpipe.stages.phase_set import phase_set_catalog, phase_set_name, phase_set_pipeline
from xrdpipe.stages.pipeline import PipelineOptions


@pytest.fixture
def lab(tmp_path):
    """Two oddly named phases (and a README) and a Bruker RAW v3 scan, 10-70 deg, R 250 mm."""
    phases = tmp_path / "NiO-free set (2024)"
    phases.mkdir()
    shutil.copy(CIF_DIR / "1009031.cif", phases / "PdO (tetragonal).cif")
    shutil.copy(CIF_DIR / "2100862.cif", phases / "BaTiO3.cif")
    (phases / "README.txt").write_text("not a phase")
    scan = tmp_path / "scan 1.raw"
    scan.write_bytes(raw_v3())
    return phases, scan


def test_the_subset_name_is_a_slug_of_the_folder(tmp_path):
    assert phase_set_name(tmp_path / "lab phases") == "phases-lab_phases"
    assert phase_set_name(tmp_path / "La(OH)3 set") == "phases-La_OH_3_set"
    assert phase_set_name(tmp_path / "((()))") == "phases-set"


def test_the_lab_defaults(tmp_path):
    subset = phase_set_subset(tmp_path)
    sim, profile = subset.simulation, subset.profile
    assert subset.source == "phases" and subset.phases == tmp_path.resolve()
    assert not subset.filters.deduplicate and subset.filters.allow_partial_occupancy
    assert (sim.strain_mode, sim.max_strain) == ("symmetry", 0.01)
    assert (sim.scattering, sim.displacement, sim.overall_b) == ("tables", "cif", 0.5)
    assert sim.wavelength == "CuKa" and sim.two_theta_range == (8.0, 102.0)
    assert profile == LAB_PROFILE
    assert profile.ka_doublet and profile.crystallite_size_nm == (20.0, 200.0)
    assert (profile.two_theta_min, profile.two_theta_max, profile.step_deg) == (10.0, 100.0, 0.02)
    po = profile.instrument.preferred_orientation
    assert po.ratio == (0.8, 1.0)
    assert profile.instrument.sample_displacement_mm == (-0.15, 0.15)
    assert profile.instrument.widths is not None and profile.instrument.counting_noise is not None
    # the preset: weight fractions of distinct phases, a 9-minute single-thread budget
    preset = load_catalog().preset("phase_fractions", PHASE_SET_PRESET)
    assert (preset.mixtures.fraction_mode, preset.mixtures.phase_draw) == ("weight", "distinct")
    assert (preset.train.max_minutes, preset.train.num_threads) == (9.0, 1)
    gpu = load_catalog().preset("phase_fractions", "phase-set-gpu")
    assert gpu.mixtures.fraction_mode == "weight" and gpu.model.width == 1.0


def test_the_written_catalog_holds_the_base_and_the_entry(lab, tmp_path):
    phases, scan = lab
    settings = Settings(data_dir=tmp_path / "data")
    base = tmp_path / "base" / "catalog.yaml"
    base.parent.mkdir()
    (base.parent / "mirror").mkdir()
    base.write_text(
        yaml.safe_dump(
            {
                "version": 2,
                "default_subset": "mine",
                "subsets": {"mine": {"source": "mirror", "mirror_dir": "mirror"}},
            }
        )
    )
    found = phase_set_catalog(phases, settings, instrument=scan, catalog=base)

    assert found.name == "phases-NiO-free_set_2024" and found.preset == PHASE_SET_PRESET
    assert found.catalog == (settings.subset_dir(found.name) / "catalog.yaml").resolve()
    text = found.catalog.read_text()
    assert "#   goniometer radius 250 mm" in text  # the header says what the scan gave
    assert "#   monochromator: none (no reader gives it)" in text
    catalog = load_catalog(found.catalog)
    assert catalog.subset("mine").mirror_dir == (base.parent / "mirror").resolve()
    assert catalog.preset("phase_fractions", PHASE_SET_PRESET).mixtures.fraction_mode == "weight"
    subset = catalog.subset(found.name)
    assert subset == found.subset
    profile = subset.profile
    assert (profile.ka1, profile.ka2, profile.ka2_ratio, profile.ka_doublet) == (
        KA1,
        KA2,
        0.5,
        True,
    )
    assert (profile.two_theta_min, profile.two_theta_max, profile.n_points) == (10.0, 70.0, 3001)
    assert profile.instrument.goniometer_radius_mm == 250.0
    assert subset.simulation.two_theta_range == (8.0, 72.0)
    assert subset.phases == phases.resolve()
    # a relative phases: path in a catalog resolves against the catalog's folder
    copied = tmp_path / "copy" / "catalog.yaml"
    copied.parent.mkdir()
    data = yaml.safe_load(text)
    data["subsets"][found.name]["phases"] = "../" + phases.name
    copied.write_text(yaml.safe_dump(data))
    assert load_catalog(copied).subset(found.name).phases == phases.resolve()


def test_a_folder_that_is_not_there_is_named(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        phase_set_catalog(tmp_path / "nope", Settings(data_dir=tmp_path))


def test_the_pipeline_on_a_phase_set_trains_every_phase(lab, tmp_path):
    phases, _ = lab
    settings = Settings(data_dir=tmp_path / "data")
    options = phase_set_pipeline(PipelineOptions(max_phases=3), settings, phases)
    assert options.subset == "phases-NiO-free_set_2024" and options.preset == PHASE_SET_PRESET
    assert options.tasks == ("phase-fractions",)
    assert (options.n_materials, options.max_phases) == (2, 2)  # K = min(K, N)
    assert (options.grid_n_values, options.grid_k_values) == ((2,), (2,))


def test_fetch_and_simulate_with_phases_and_instrument(lab, tmp_path, monkeypatch):
    phases, scan = lab
    monkeypatch.setenv("XRDPIPE_DASK_WORKERS", "1")
    data = tmp_path / "data"
    runner = CliRunner()
    options = ["--phases", str(phases), "--instrument", str(scan), "--data-dir", str(data)]
    fetched = runner.invoke(app, ["fetch", *options])
    assert fetched.exit_code == 0, fetched.output
    name = "phases-NiO-free_set_2024"
    manifest = pd.read_parquet(data / name / "manifest.parquet")
    assert sorted(manifest["phase_name"]) == ["BaTiO3", "PdO (tetragonal)"]
    simulated = runner.invoke(app, ["simulate", *options])
    assert simulated.exit_code == 0, simulated.output

    from xrdpipe.patterns.datasets import load_peaks

    peaks = load_peaks(data / name / "patterns.zarr", "train")
    assert sorted(peaks.materials["phase_name"]) == ["BaTiO3", "PdO (tetragonal)"]
    assert peaks.peaks.n_materials == 2
    assert float(peaks.peaks.two_theta.max()) <= 72.0  # the scan's 70 deg + the 2 deg margin
    catalog = load_catalog(data / name / "catalog.yaml")
    assert catalog.subset(name).profile.n_points == 3001
    bad = runner.invoke(app, ["simulate", "--instrument", str(scan), "--data-dir", str(data)])
    assert bad.exit_code == 2 and "--instrument needs --phases" in bad.output


def test_phase_fraction_commands_default_to_the_preset_and_every_phase(lab, tmp_path):
    from xrdpipe.cli.common import target

    phases, scan = lab
    data = tmp_path / "data"
    on = target("demo", None, data, phases, scan)
    assert on.subset == "phases-NiO-free_set_2024" and on.catalog.is_file()
    assert (on.preset(None, "cpu"), on.preset("paper", "cpu")) == (PHASE_SET_PRESET, "paper")
    assert (on.n_materials(None, data), on.n_materials(1, data)) == (2, 1)
    plain = target("demo", None, data, None, None)
    assert (plain.subset, plain.catalog, plain.preset(None, "cpu")) == ("demo", None, "cpu")
    assert plain.n_materials(None, data) == 5


def test_a_phase_sets_refinement_uses_its_stores_scattering_factors():
    """KLaS2 under the lab defaults: the refinement's |F|^2 m are the stored peaks' / LP."""
    import warnings

    from xrdpipe.config.phase_set import phase_set_simulation
    from xrdpipe.refinement import phase_from_structure
    from xrdpipe.refinement.phases import lorentz_polarisation
    from xrdpipe.stages.quantify_scans import refinement_options
    from xrdpipe.stages.simulate_block import simulate_material
    from xrdpipe.structures.displacement import attach_displacements
    from xrdpipe.structures.parse import parse_structure

    cif = Path(__file__).resolve().parents[2] / "benchmarks/quantify/phases/KLaS2.cif"
    text = cif.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = attach_displacements(parse_structure(text), text)  # as the manifest keeps it
    sim = phase_set_simulation(LAB_PROFILE).model_copy(
        update={"n_train_strains": 1, "n_test_strains": 1}
    )
    options = refinement_options(sim)
    assert options == {"scattering": "tables", "displacement": "cif", "overall_b": 0.5}
    stored = simulate_material(structure, 0, sim, seed=0, n_peaks=4000)
    real = stored["peak_mask"][-1]  # the last condition is the unstrained reference
    hkl = [tuple(h) for h in stored["hkl"][-1][real].tolist()]
    store = dict(zip(hkl, stored["intensity_raw"][-1][real] / lorentz_polarisation(
        stored["two_theta"][-1][real]), strict=True))  # fmt: skip
    phase = phase_from_structure(structure, "KLaS2", (10.0, 100.0), sim.wavelength, **options)
    mine = dict(zip(map(tuple, phase.hkl.tolist()), phase.structure_intensity, strict=True))
    matched = [(store[h], mine[h]) for h in mine if h in store]
    assert len(matched) >= 0.9 * len(mine) and len(matched) > 30
    np.testing.assert_allclose(*np.array(matched).T, rtol=1e-8)
    # the settings a phase set's store is simulated with would not give it in pymatgen's mode
    plain = phase_from_structure(structure, "KLaS2", (10.0, 100.0), sim.wavelength)
    assert np.abs(plain.structure_intensity / phase.structure_intensity - 1).max() > 0.1
