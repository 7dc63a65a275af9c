"""Store readers of the engine: peak lists in memory, stored profiles, fixed mixture sets."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support import SHARED_DIR
from xrdpipe.config import SubsetConfig
from xrdpipe.errors import StoreError
from xrdpipe.patterns.config import MixtureConfig, ProfileConfig
from xrdpipe.patterns.datasets import (
    fixed_mixture_set,
    load_peaks,
    load_profiles,
    render_store_profiles,
)
from xrdpipe.patterns.render import render_clean
from xrdpipe.stages.simulate import run_simulation
from xrdpipe.structures.manifest import CifEntry, build_manifest

IDS = ["1009031", "2100862", "9008488", "3000024"]
PROFILE = ProfileConfig(n_points=1401)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    subset = SubsetConfig(
        source="mirror",
        mirror_dir=SHARED_DIR / "cod-sample" / "cif",
        seed=11,
        simulation={
            "n_train_strains": 5,
            "n_test_strains": 3,
            "materials_per_chunk": 2,
            "strain_mode": "symmetry",
        },
        profile=PROFILE,
    )
    entries = [
        CifEntry(i, SHARED_DIR / "cod-sample" / "cif" / f"{i}.cif", None, "mirror", "now")
        for i in IDS
    ]
    manifest = build_manifest(entries, subset, verify_sha256=False).manifest
    assert len(manifest) == 4
    store_path = folder / "patterns.zarr"
    run_simulation(manifest, store_path, subset)
    return store_path


def test_load_peaks_splits_and_trims(small_store):
    train = load_peaks(small_store, "train")
    test = load_peaks(small_store, "test")
    ref = load_peaks(small_store, "reference")
    assert train.peaks.two_theta.shape[:2] == (4, 5)
    assert test.peaks.two_theta.shape[:2] == (4, 3)
    assert ref.peaks.two_theta.shape[:2] == (4, 1)
    assert test.strain_index.tolist() == [5, 6, 7]
    # the peak axis is trimmed to the longest real list, and every kept slot is used once
    assert bool(train.peaks.peak_mask[..., -1].any())
    assert train.peaks.two_theta.shape[2] < 200
    chosen = load_peaks(small_store, "test", materials=["9008488", "1009031"])
    assert chosen.materials["cod_id"].tolist() == ["9008488", "1009031"]
    with pytest.raises(StoreError, match="not completed"):
        load_peaks(small_store, "test", materials=["123"])
    with pytest.raises(StoreError, match="split 'validation'"):
        load_peaks(small_store, "validation")


def test_stored_profiles_equal_direct_rendering_and_resume(small_store):
    key = render_store_profiles(small_store, PROFILE)
    assert key.startswith("profiles/")
    profiles, materials, grid = load_profiles(small_store, PROFILE, "test")
    assert profiles.shape == (4, 3, 1401) and len(grid) == 1401
    peaks = load_peaks(small_store, "test")
    direct = render_clean(
        peaks.peaks.two_theta[1],
        peaks.peaks.intensity[1],
        peaks.peaks.peak_mask[1],
        PROFILE,
        wavelength=peaks.wavelength,
    ).numpy()
    np.testing.assert_allclose(profiles[1], direct, atol=1e-6)
    # a second call finds every block complete and returns the same group
    assert render_store_profiles(small_store, PROFILE) == key
    # another peak shape is another group; the first one is untouched
    other = PROFILE.model_copy(update={"clean_eta": 0.2})
    assert render_store_profiles(small_store, other) != key
    np.testing.assert_array_equal(load_profiles(small_store, PROFILE, "test")[0], profiles)
    # several splits in the order given, cut to the first strains of that order
    train = load_profiles(small_store, PROFILE, "train")[0]
    both = load_profiles(small_store, PROFILE, ("test", "train"), max_strains_per_material=4)[0]
    np.testing.assert_array_equal(both, np.concatenate([profiles, train[:, :1]], axis=1))
    with pytest.raises(StoreError, match="split 'validation'"):
        load_profiles(small_store, PROFILE, ("train", "validation"))


def test_fixed_mixture_set_is_recorded_and_verified(small_store, tmp_path):
    cfg = MixtureConfig(n_materials=4, max_phases=3, batch_size=64)
    first = fixed_mixture_set(
        small_store, "test", IDS, cfg, PROFILE, n=100, seed=2, record_dir=tmp_path
    )
    again = fixed_mixture_set(
        small_store, "test", IDS, cfg, PROFILE, n=100, seed=2, record_dir=tmp_path
    )
    assert first.sha256 == again.sha256 and first.key == again.key
    assert torch.equal(first.patterns, again.patterns)
    assert (tmp_path / f"{first.key}.json").is_file()
    other = fixed_mixture_set(small_store, "test", IDS, cfg, PROFILE, n=100, seed=3)
    assert other.sha256 != first.sha256
    record = tmp_path / f"{first.key}.json"
    record.write_text(record.read_text().replace(first.sha256, "0" * 64))
    with pytest.raises(StoreError, match="no longer reproduces"):
        fixed_mixture_set(
            small_store, "test", IDS, cfg, PROFILE, n=100, seed=2, record_dir=tmp_path
        )
