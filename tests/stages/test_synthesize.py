"""The synthesize stage: same manifest on any number of workers, resumable, simulable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xrdpipe.config import Settings, SimulationConfig, SubsetConfig, SymmetrySettings
from xrdpipe.parallel import dask_client
from xrdpipe.stages.simulate import run_simulation
from xrdpipe.stages.synthesize import (
    CHUNK_DIR,
    SYNTHETIC_MANIFEST_COLUMNS,
    run_fingerprint,
    synthesize_chunk,
    synthesize_manifest,
)
from xrdpipe.store import layout as store
from xrdpipe.structures.manifest import read_manifest, read_quarantine
from xrdpipe.structures.synthetic import SyntheticConfig, synthesize_structure

CONFIG = SyntheticConfig(n_structures=30, max_atoms=20, structures_per_task=7)
SEED = 4


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serial")
    report = synthesize_manifest(CONFIG, SEED, folder)
    return folder, report


def test_manifest_and_quarantine_hold_every_draw(serial):
    folder, report = serial
    manifest, quarantine = read_manifest(folder), read_quarantine(folder)
    assert list(manifest.columns) == list(SYNTHETIC_MANIFEST_COLUMNS)
    assert len(manifest) + len(quarantine) == CONFIG.n_structures == report.n_draws
    indices = sorted([*manifest["synthetic_index"], *quarantine["synthetic_index"]])
    assert indices == list(range(CONFIG.n_structures))
    assert manifest["cod_id"].tolist() == sorted(manifest["cod_id"])
    assert (quarantine["reason"].str.len() > 0).all() and (quarantine["detail"] != "").all()
    assert report.n_kept == len(manifest) and report.chunks_submitted == 5
    assert not (folder / CHUNK_DIR).exists()
    # Row i is what synthesize_structure(i) gives on its own.
    row, _ = synthesize_structure(int(manifest["synthetic_index"][0]), SEED, CONFIG, 0.1, 5.0)
    assert manifest["structure_json"][0] == row["structure_json"]


def test_two_workers_and_other_chunks_give_the_same_manifest(serial, tmp_path):
    folder, _ = serial
    other = CONFIG.model_copy(update={"structures_per_task": 4})
    with dask_client(Settings(data_dir=tmp_path), n_workers=2) as client:
        report = synthesize_manifest(other, SEED, tmp_path / "dask", client=client)
    assert report.chunks_submitted == 8
    pd.testing.assert_frame_equal(read_manifest(folder), read_manifest(tmp_path / "dask"))
    pd.testing.assert_frame_equal(read_quarantine(folder), read_quarantine(tmp_path / "dask"))


def test_an_interrupted_run_resumes_from_its_chunk_files(serial, tmp_path):
    folder, _ = serial
    chunk_dir = tmp_path / CHUNK_DIR / run_fingerprint(CONFIG, SEED, SymmetrySettings())
    chunk_dir.mkdir(parents=True)
    synthesize_chunk(7, 14, SEED, CONFIG, SymmetrySettings(), str(chunk_dir))
    (chunk_dir / "chunk-00000000-00000007.quarantine.parquet").write_bytes(b"")  # torn write
    report = synthesize_manifest(CONFIG, SEED, tmp_path)
    assert (report.chunks_resumed, report.chunks_submitted) == (1, 4)
    pd.testing.assert_frame_equal(read_manifest(folder), read_manifest(tmp_path))


@pytest.mark.parametrize("n_test", [1, 0])
def test_the_simulate_stage_stores_a_synthetic_manifest(serial, tmp_path, n_test):
    folder, _ = serial
    simulation = SimulationConfig(n_train_strains=2, n_test_strains=1, materials_per_chunk=4)
    # n_test_strains=0 is below the catalog's bound today (ge=1); the simulator handles it.
    simulation = simulation.model_copy(update={"n_test_strains": n_test})
    subset = SubsetConfig(seed=SEED, simulation=simulation)
    report = run_simulation(folder, tmp_path / "patterns.zarr", subset)
    manifest = read_manifest(folder)
    assert report.n_materials == len(manifest)
    assert report.simulated + len(report.quarantined) == len(manifest)
    assert report.simulated >= len(manifest) - 1
    data = store.open_store(tmp_path / "patterns.zarr")
    assert data["strain_tensor"].shape[:2] == (len(manifest), 2 + n_test + 1)
    assert [str(v) for v in data["cod_id"].values] == manifest["cod_id"].tolist()
    assert np.all(data["strain_tensor"].values[:, -1] == 0)  # the unstrained reference
    assert data["completed"].values.all()
    ok = data["status"].values == store.STATUS_OK
    assert (data["n_peaks"].values[ok] > 0).all()
