"""Fixtures of the training tests."""

from __future__ import annotations

import pytest

from xrdpipe.config import SimulationConfig, SubsetConfig, SyntheticConfig


@pytest.fixture(scope="session")
def tiny_synthetic_store(tmp_path_factory):
    from xrdpipe.stages.simulate import load_manifest, run_simulation
    from xrdpipe.stages.synthesize import synthesize_manifest

    folder = tmp_path_factory.mktemp("synthetic") / "syn"
    config = SyntheticConfig(
        n_structures=28, max_atoms=8, balance_over="lattice_system", structures_per_task=28
    )
    sim = SimulationConfig(n_train_strains=1, n_test_strains=0, strain_mode="symmetry")
    subset = SubsetConfig(source="synthetic", synthetic=config, simulation=sim, seed=2)
    synthesize_manifest(config, 2, folder)
    manifest, _ = load_manifest(folder)
    run_simulation(manifest, folder / "patterns.zarr", subset)
    return folder / "patterns.zarr", subset
