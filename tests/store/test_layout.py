"""The pattern store on real Zarr v3 stores under tmp_path, with synthetic arrays."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
import zarr

from xrdpipe.config import SimulationConfig, SubsetConfig
from xrdpipe.errors import StoreError
from xrdpipe.store import layout as st
from xrdpipe.store.reading import read_materials

N_TRAIN, N_TEST, N_PEAKS, CHUNK = 3, 2, 4, 2
N_STRAIN = N_TRAIN + N_TEST + 1


def subset(**sim: object) -> SubsetConfig:
    settings = {
        "n_train_strains": N_TRAIN,
        "n_test_strains": N_TEST,
        "materials_per_chunk": CHUNK,
        "strain_mode": "symmetry",
        "max_strain": 0.04,
    }
    settings.update(sim)
    return SubsetConfig(seed=11, simulation=SimulationConfig(**settings))


def materials(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cod_id": [str(9000000 + i) for i in range(n)],
            "formula": [f"Na{i + 1} Cl{i + 1}" for i in range(n)],
            "space_group_number": [225, 62, 14, 194, 2, 166][:n],
            "space_group_symbol": ["Fm-3m", "Pnma", "P2_1/c", "P6_3/mmc", "P-1", "R-3m"][:n],
            "crystal_system": [
                "cubic",
                "orthorhombic",
                "monoclinic",
                "hexagonal",
                "triclinic",
                "trigonal",
            ][:n],
            "lattice_system": [
                "cubic",
                "orthorhombic",
                "monoclinic",
                "hexagonal",
                "triclinic",
                "rhombohedral",
            ][:n],
        }
    )


def block(start: int, stop: int) -> dict[str, np.ndarray]:
    """Arrays whose values encode the material index, so misplaced writes show."""
    n = stop - start
    idx = np.arange(start, stop, dtype=float)[:, None, None]
    base = idx + np.linspace(0, 0.5, N_STRAIN)[None, :, None] + np.zeros((1, 1, N_PEAKS))
    return {
        "two_theta": 20.0 + base,
        "intensity": 100.0 - base,
        "intensity_raw": 1e3 * base,
        "d_spacing": 1.0 + base / 10,
        "multiplicity": np.full((n, N_STRAIN, N_PEAKS), 6, dtype="i4"),
        "hkl": np.broadcast_to(np.array([1, 1, 0], dtype="i4"), (n, N_STRAIN, N_PEAKS, 3)).copy(),
        "peak_mask": np.tile(np.array([True, True, True, False]), (n, N_STRAIN, 1)),
        "n_peaks": np.full((n, N_STRAIN), 3, dtype="i4"),
        "volume": 40.0 + base[..., 0],
        "density": 2.0 + base[..., 0] / 100,
        "strain_tensor": np.broadcast_to(np.eye(3) * 0.01, (n, N_STRAIN, 3, 3)) * idx[..., None],
        "status": np.array(["ok"] * n, dtype=object),
        "quarantine_reason": np.array([""] * n, dtype=object),
    }


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "demo" / "patterns.zarr"
    st.create_store(
        path, materials(), N_PEAKS, subset(), simulator_version="sim-1", manifest_sha256="a" * 64
    )
    return path


def test_layout_attrs_coords_round_trip(store):
    ds = st.open_store(store)
    assert dict(ds.sizes) == {
        "material": 5,
        "strain": N_STRAIN,
        "peak": N_PEAKS,
        "vec3": 3,
        "i": 3,
        "j": 3,
    }
    assert list(ds["cod_id"].values) == [str(9000000 + i) for i in range(5)]
    assert list(ds["space_group_number"].values) == [225, 62, 14, 194, 2]
    assert ds["lattice_system"].values[4] == "triclinic"
    assert list(ds["split"].values) == ["train"] * 3 + ["test"] * 2 + ["reference"]
    for name in st.MATERIAL_COORDS + ("split", "strain_tensor"):
        assert name in ds.coords
    assert ds["hkl"].dims == ("material", "strain", "peak", "vec3")
    assert ds["strain_tensor"].dims == ("material", "strain", "i", "j")
    assert ds["two_theta"].attrs["units"] == "degree"
    attrs = ds.attrs
    assert attrs["wavelength"] == pytest.approx(1.54184)
    assert attrs["wavelength_name"] == "CuKa"
    assert (attrs["two_theta_min"], attrs["two_theta_max"]) == (10.0, 80.0)
    assert (attrs["strain_mode"], attrs["max_strain"]) == ("symmetry", 0.04)
    assert (attrs["n_train"], attrs["n_test"], attrs["seed"]) == (N_TRAIN, N_TEST, 11)
    assert attrs["simulator_version"] == "sim-1"
    assert attrs["manifest_sha256"] == "a" * 64
    assert json.loads(attrs["catalog_entry"])["simulation"]["max_strain"] == 0.04
    assert attrs["fingerprint"] == st.config_fingerprint(subset(), "sim-1", "a" * 64)
    assert st.store_fingerprint(store) == attrs["fingerprint"]
    assert attrs["created_at"].endswith("+00:00")
    # nothing is complete, everything pending, no data chunk written yet
    assert not st.completed_materials(store).any()
    assert set(ds["status"].values) == {st.STATUS_PENDING}
    group = zarr.open_group(str(store), mode="r")
    assert group.metadata.zarr_format == 3
    for name in ("two_theta", "hkl", "completed", "strain_tensor"):
        assert group[name].chunks[0] == CHUNK
        assert group[name].chunks[1:] == group[name].shape[1:]
        assert group[name].shards is None
        assert type(group[name].compressors[0]).__name__ == "BloscCodec"
    assert not (store / "two_theta" / "c").exists()  # data chunks come only from blocks


def test_blocks_and_completion_honoured_by_load_completed(store):
    st.write_block(store, 4, 5, block(4, 5))  # the short last block
    st.mark_completed(store, 4, 5)
    st.write_block(store, 0, 2, block(0, 2))
    st.mark_completed(store, 0, 2)
    # data written but never marked: readers must not see it
    st.write_block(store, 2, 4, block(2, 4))
    assert list(st.completed_materials(store)) == [True, True, False, False, True]
    ds = st.load_completed(store)
    assert list(ds["cod_id"].values) == ["9000000", "9000001", "9000004"]
    expected = np.concatenate([block(0, 2)["two_theta"], block(4, 5)["two_theta"]])
    np.testing.assert_array_equal(ds["two_theta"].values, expected)
    np.testing.assert_array_equal(ds["strain_tensor"].values[2, 0], np.eye(3) * 0.04)
    assert ds["multiplicity"].dtype == np.int32 and ds["peak_mask"].dtype == bool
    assert ds["hkl"].values[0, 0, 0].tolist() == [1, 1, 0]
    full = st.open_store(store)
    np.testing.assert_array_equal(full["volume"].values[3], block(2, 4)["volume"][1])


def test_quarantined_materials_are_completed_but_not_loaded(store):
    arrays = block(0, 2)
    arrays["status"][1] = st.STATUS_QUARANTINED
    arrays["quarantine_reason"][1] = "simulate: no reflections in range"
    st.write_block(store, 0, 2, arrays)
    st.mark_completed(store, 0, 2)
    assert list(st.load_completed(store)["cod_id"].values) == ["9000000"]
    both = st.load_completed(store, include_quarantined=True)
    assert list(both["status"].values) == ["ok", "quarantined"]
    assert both["quarantine_reason"].values[1] == "simulate: no reflections in range"


@pytest.mark.parametrize(("start", "stop"), [(1, 3), (0, 3), (2, 3), (0, 1), (3, 5), (4, 6)])
def test_misaligned_region_rejected(store, start, stop):
    with pytest.raises(StoreError, match=r"not (aligned|inside)"):
        st.write_block(store, start, stop, block(start, stop))
    with pytest.raises(StoreError, match=r"not (aligned|inside)"):
        st.mark_completed(store, start, stop)
    assert not st.completed_materials(store).any()


@pytest.mark.parametrize(("name", "bad"), [("density", np.nan), ("two_theta", np.inf)])
def test_non_finite_rejected_naming_the_variable(store, name, bad):
    arrays = block(2, 4)
    arrays[name][1, 2, ...] = bad
    with pytest.raises(StoreError, match=rf"'{name}'.*non-finite"):
        st.write_block(store, 2, 4, arrays)
    # nothing written: the chunks still read as the fill values (peak slots empty)
    ds = st.open_store(store)
    assert np.isnan(ds["density"].values[2:4]).all()
    assert not ds["two_theta"].values[2:4].any() and not ds["peak_mask"].values[2:4].any()


def test_missing_variable_and_bad_shape_rejected(store):
    arrays = block(0, 2)
    del arrays["hkl"]
    with pytest.raises(StoreError, match=r"missing \['hkl'\]"):
        st.write_block(store, 0, 2, arrays)
    arrays = block(0, 2)
    arrays["volume"] = arrays["volume"][:, :-1]
    with pytest.raises(StoreError, match="'volume'.*shape"):
        st.write_block(store, 0, 2, arrays)


def test_fingerprint_mismatch_refused_overwrite_allowed(store):
    st.write_block(store, 0, 2, block(0, 2))
    st.mark_completed(store, 0, 2)
    # the same configuration reopens the store as it is
    again = st.create_store(
        store, materials(), N_PEAKS, subset(), simulator_version="sim-1", manifest_sha256="a" * 64
    )
    assert bool(again["completed"].values[0])
    other = functools.partial(
        st.create_store,
        store,
        materials(),
        N_PEAKS,
        subset(max_strain=0.02),
        simulator_version="sim-2",
        manifest_sha256="a" * 64,
    )
    with pytest.raises(StoreError) as info:
        other()
    message = str(info.value)
    assert "max_strain: store has 0.04, requested 0.02" in message
    assert "simulator_version: store has 'sim-1', requested 'sim-2'" in message
    assert "fingerprint" in message and "overwrite=True" in message
    assert "n_train" not in message
    new = other(overwrite=True)
    assert new.attrs["max_strain"] == 0.02
    assert not st.completed_materials(store).any()
    assert np.isnan(new["density"].values).all() and not new["two_theta"].values.any()


def test_description_does_not_change_fingerprint():
    a = st.config_fingerprint(subset(), "v", "s")
    b = st.config_fingerprint(subset().model_copy(update={"description": "x"}), "v", "s")
    assert a == b
    assert a != st.config_fingerprint(subset(), "v", "t")
    assert a != st.config_fingerprint(subset().model_copy(update={"seed": 12}), "v", "s")


def test_fsspec_url_store():
    url = "memory://xrdpipe-test/patterns.zarr"
    st.create_store(
        url,
        materials(3),
        N_PEAKS,
        subset(),
        simulator_version="sim-1",
        manifest_sha256="b" * 64,
        overwrite=True,
    )
    st.write_block(url, 2, 3, block(2, 3))
    st.mark_completed(url, 2, 3)
    ds = st.load_completed(url)
    assert list(ds["cod_id"].values) == ["9000002"]
    np.testing.assert_array_equal(ds["d_spacing"].values, block(2, 3)["d_spacing"])


def test_open_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no pattern store"):
        st.open_store(tmp_path / "nothing.zarr")
    assert not st.store_exists(tmp_path / "nothing.zarr")


def test_read_materials_equals_the_datasets_selection(store):
    st.write_block(store, 0, 2, block(0, 2))
    st.mark_completed(store, 0, 2)
    arrays = block(2, 4)
    arrays["status"][0] = st.STATUS_QUARANTINED  # material 2: completed, not kept
    st.write_block(store, 2, 4, arrays)
    st.mark_completed(store, 2, 4)
    rows = st.completed_indices(store)
    assert rows.tolist() == [0, 1, 3]
    assert st.completed_indices(store, include_quarantined=True).tolist() == [0, 1, 2, 3]
    strains = np.array([N_STRAIN - 1, 0])  # the reference first, as training reads them
    names = ("two_theta", "intensity", "peak_mask", "hkl")
    got = read_materials(store, names, rows[1:], strains, 3)
    ds = st.load_completed(store).isel(material=slice(1, 3), strain=strains, peak=slice(0, 3))
    for name in names:
        np.testing.assert_array_equal(got[name], ds[name].values)
        assert got[name].dtype == ds[name].dtype
    assert got["two_theta"].shape == (2, 2, 3) and got["hkl"].shape == (2, 2, 3, 3)
    # material 3's reference condition: 20 + 3 + 0.5 (the value encodes index and strain)
    assert got["two_theta"][1, 0, 0] == pytest.approx(23.5)
    with pytest.raises(StoreError, match="'volume' is not a per-peak variable"):
        read_materials(store, ("volume",), rows, strains, 3)
    with pytest.raises(StoreError, match="'nope' is not a variable"):
        read_materials(store, ("nope",), rows, strains, 3)
