"""``source: synthetic``: fetch (the synthesize stage on Dask) -> simulate -> store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xrdpipe.config import Settings, SimulationConfig, SubsetConfig, SyntheticConfig
from xrdpipe.stages.fetch import fetch_subset
from xrdpipe.stages.simulate import load_manifest, run_simulation
from xrdpipe.stages.synthesize import synthesize_manifest

SYNTHETIC = SyntheticConfig(
    n_structures=10, max_atoms=10, structures_per_task=4, balance_over="lattice_system"
)
SIMULATION = SimulationConfig(
    n_train_strains=1, n_test_strains=0, strain_mode="symmetry", max_strain=0.02
)


def subset(seed: int) -> SubsetConfig:
    return SubsetConfig(source="synthetic", synthetic=SYNTHETIC, simulation=SIMULATION, seed=seed)


def test_a_synthetic_subset_goes_from_fetch_to_a_store_deterministically(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", dask_workers=1)
    report = fetch_subset("syn", subset(5), settings)  # the synthesize stage on a Dask cluster
    folder = settings.subset_dir("syn")
    manifest, _ = load_manifest(folder)
    quarantine = pd.read_parquet(folder / "quarantine.parquet")
    assert report.source == "synthetic:seed=5"
    assert report.n_candidates == 10
    assert report.n_kept == len(manifest) == 10 - len(quarantine)
    # generation parameters and Wyckoff letters are in the manifest
    for column in ("generation_seed", "requested_space_group", "wyckoff_sites"):
        assert manifest[column].notna().all(), column
    assert manifest["spglib_wyckoff_letters"].str.len().gt(0).all()

    # the same seed in-process (no Dask, other chunks) gives the same manifest
    again = synthesize_manifest(
        SYNTHETIC.model_copy(update={"structures_per_task": 5}), 5, tmp_path / "again"
    )
    same = pd.read_parquet(again.folder / "manifest.parquet")
    assert same["structure_json"].tolist() == manifest["structure_json"].tolist()
    other = synthesize_manifest(SYNTHETIC, 6, tmp_path / "other")
    other_rows = pd.read_parquet(other.folder / "manifest.parquet")["structure_json"].tolist()
    assert other_rows != manifest["structure_json"].tolist()

    store_path = folder / "patterns.zarr"
    run_simulation(manifest, store_path, subset(5))
    ds = xr.open_zarr(store_path, consolidated=False)
    assert ds.sizes["material"] == len(manifest)
    assert ds.sizes["strain"] == 2  # one stored strain and the unstrained reference
    assert ds["split"].values.tolist() == ["train", "reference"]
    assert bool(ds["completed"].values.all())
    assert [str(v) for v in ds["cod_id"].values] == manifest["cod_id"].tolist()
    # labels in the store are spglib's of the manifest
    assert ds["space_group_number"].values.tolist() == manifest["space_group_number"].tolist()
    n_peaks = ds["n_peaks"].values
    assert (n_peaks[ds["status"].values == "ok"] > 0).all()

    # the same manifest simulates to the same peaks (strain draws seeded by the subset)
    again_store = tmp_path / "again.zarr"
    run_simulation(manifest.iloc[:3], again_store, subset(5))
    again = xr.open_zarr(again_store, consolidated=False)
    width = again.sizes["peak"]
    assert again["n_peaks"].values.tolist() == n_peaks[:3].tolist()
    np.testing.assert_array_equal(again["two_theta"].values, ds["two_theta"].values[:3, :, :width])


def test_a_synthetic_subset_needs_its_section_and_zero_test_strains_are_allowed():
    with pytest.raises(ValueError, match="needs a synthetic section"):
        SubsetConfig(source="synthetic")
    with pytest.raises(ValueError, match="needs source 'synthetic'"):
        SubsetConfig(source="package", synthetic=SYNTHETIC)
    assert SimulationConfig(n_test_strains=0).n_test_strains == 0
    # COD subsets dump no synthetic key: their fingerprints are unchanged
    assert "synthetic" not in SubsetConfig().model_dump()


def test_the_catalog_synthetic_subset_is_balanced_over_lattice_systems():
    from xrdpipe.config import load_catalog

    synthetic = load_catalog().subset("synthetic")
    assert synthetic.source == "synthetic"
    assert synthetic.synthetic is not None
    assert synthetic.synthetic.balance_over == "lattice_system"
    assert 4000 <= synthetic.synthetic.n_structures <= 10000
    sim = synthetic.simulation
    assert (sim.n_train_strains + sim.n_test_strains + 1) <= 2
