"""Parallel, resumable simulation into a real Zarr store, serially and on real Dask clusters."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from tests.support import CIF_DIR, manifest_row
from xrdpipe.config import Settings, SimulationConfig, SubsetConfig
from xrdpipe.errors import StoreError
from xrdpipe.parallel import dask_client
from xrdpipe.stages.simulate import BlockReport, plan_blocks, run_simulation
from xrdpipe.stages.simulate_block import rebuild_structure, simulate_material
from xrdpipe.store import layout as st

REPO = Path(__file__).resolve().parents[2]
COD_IDS = (
    "9008506",  # Mg, hexagonal
    "1009031",  # PdO, tetragonal
    "2100862",  # BaTiO3, cubic
    "1537412",  # VO2, tetragonal
    None,  # a row whose structure does not rebuild: quarantined at simulate time
    "2010577",  # BiSeI, orthorhombic
    "3000024",  # Zn3Al2O6, monoclinic
    "9008098",  # AsI3, trigonal
    "2019541",  # NaLuS2, trigonal (R)
)
BROKEN_ID = "0000000"
N_BLOCKS = 5  # 9 materials, 2 per chunk: the last block is short


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed flow run."""


def _manifest() -> pd.DataFrame:
    broken = {
        "cod_id": BROKEN_ID,
        "formula": "X1",
        "reduced_formula": "X",
        "space_group_number": 1,
        "space_group_symbol": "P1",
        "crystal_system": "triclinic",
        "lattice_system": "triclinic",
        "structure_json": json.dumps({"lattice": "not a lattice"}),
    }
    return pd.DataFrame([broken if i is None else manifest_row(i) for i in COD_IDS])


SUBSET = SubsetConfig(
    seed=5,
    simulation=SimulationConfig(
        n_train_strains=20,
        n_test_strains=8,
        max_strain=0.05,
        strain_mode="unconstrained",
        materials_per_chunk=2,
    ),
)


@pytest.fixture(scope="module")
def manifest() -> pd.DataFrame:
    return _manifest()


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """An uninterrupted serial run: the store every other run must equal."""
    path = tmp_path_factory.mktemp("reference") / "patterns.zarr"
    report = run_simulation(manifest, path, SUBSET)
    return path, report


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """Two worker processes; a task on a killed worker fails at once (no silent re-run)."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("dask-data"))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with dask_client(settings, n_workers=2) as c:
            yield c


WORKER_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ZARR_THREADING__MAX_WORKERS": "1",
    "MALLOC_TRIM_THRESHOLD_": None,
}


def _worker_environment() -> Callable[[], dict[str, str | None]]:
    names = list(WORKER_ENVIRONMENT)
    # a lambda travels by value: an external worker cannot import this test module
    return lambda: {name: os.environ.get(name) for name in names}


def test_local_cluster_workers_run_one_thread_and_glibc_malloc_defaults(client):
    """One thread per worker, and no MALLOC_TRIM_THRESHOLD_ (it slowed training ~40 %)."""
    assert list(client.run(_worker_environment()).values()) == [WORKER_ENVIRONMENT] * 2


def assert_stores_equal(a: Path | str, b: Path | str) -> None:
    da_, db = st.open_store(a).load(), st.open_store(b).load()
    assert set(da_.variables) == set(db.variables)
    for name in da_.variables:
        x, y = da_[name].values, db[name].values
        assert x.shape == y.shape, name
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert (x == y).all(), name
    strip = {"created_at"}
    assert {k: v for k, v in da_.attrs.items() if k not in strip} == {
        k: v for k, v in db.attrs.items() if k not in strip
    }


def test_plan_blocks():
    assert plan_blocks(9, 2) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    assert plan_blocks(4, 4) == [(0, 4)]
    assert plan_blocks(3, 5) == [(0, 3)]
    assert plan_blocks(0, 2) == []
    with pytest.raises(ValueError, match="materials_per_chunk"):
        plan_blocks(3, 0)


def test_serial_run_fills_the_store_and_a_rerun_submits_nothing(manifest, reference):
    path, report = reference
    assert (report.n_blocks, report.blocks_submitted, report.blocks_skipped) == (N_BLOCKS,) * 2 + (
        0,
    )
    assert (report.simulated, report.skipped) == (8, 0)
    assert list(report.quarantined) == [BROKEN_ID]
    assert "structure_json does not rebuild" in report.quarantined[BROKEN_ID]
    assert st.completed_materials(path).all()

    ds = st.open_store(path).load()
    assert report.n_peaks == ds.sizes["peak"] == ds.attrs["n_peaks"]
    assert ds.sizes["strain"] == 29 and list(ds["split"].values[-2:]) == ["test", "reference"]
    assert list(ds["status"].values).count("quarantined") == 1
    ok = ds.isel(material=np.flatnonzero(ds["status"].values == "ok"))
    mask = ok["peak_mask"].values
    np.testing.assert_array_equal(mask.sum(axis=-1), ok["n_peaks"].values)
    assert (ok["n_peaks"].values > 0).all()
    two_theta = ok["two_theta"].values[mask]
    assert two_theta.min() >= 10.0 and two_theta.max() <= 80.0
    np.testing.assert_allclose(np.where(mask, ok["intensity"].values, 0).max(axis=-1), 100.0)
    # the last condition is the unstrained reference, the others are not
    assert not ok["strain_tensor"].values[:, -1].any()
    assert np.abs(ok["strain_tensor"].values[:, :-1]).max(axis=(-2, -1)).min() > 0
    quarantined = ds.isel(material=4)
    assert quarantined["cod_id"].item() == BROKEN_ID
    assert not quarantined["peak_mask"].values.any()

    # results do not depend on blocking: material 5 alone equals its stored values
    alone = simulate_material(
        rebuild_structure(manifest["structure_json"][5]),
        5,
        SUBSET.simulation,
        SUBSET.seed,
        report.n_peaks,
    )
    width = alone["two_theta"].shape[-1]
    assert width == ok["n_peaks"].values[ok["cod_id"].values == manifest["cod_id"][5]].max()
    for name, values in alone.items():
        stored = ds[name].values[5]
        if ds[name].dims[:3] == ("material", "strain", "peak"):
            assert not stored[:, width:].any(), name  # slots past the list read as empty
            stored = stored[:, :width]
        np.testing.assert_array_equal(stored, values, err_msg=name)

    again = run_simulation(manifest, path, SUBSET)
    assert (again.blocks_submitted, again.blocks_skipped) == (0, N_BLOCKS)
    assert (again.simulated, again.skipped, again.quarantined) == (0, 9, {})
    assert again.fingerprint == report.fingerprint == st.store_fingerprint(path)


def test_other_config_refused_then_overwritten(manifest, reference, tmp_path):
    path = tmp_path / "patterns.zarr"
    small = SubsetConfig(
        seed=5,
        simulation=SUBSET.simulation.model_copy(update={"n_train_strains": 2, "n_test_strains": 1}),
    )
    run_simulation(manifest.iloc[:2], path, small)
    with pytest.raises(StoreError, match=r"n_train: store has 2, requested 20.*overwrite=True"):
        run_simulation(manifest.iloc[:2], path, SUBSET)
    report = run_simulation(manifest.iloc[:2], path, SUBSET, overwrite=True)
    assert report.blocks_submitted == 1 and st.open_store(path).sizes["strain"] == 29


def test_interrupted_run_recomputes_only_missing_blocks(manifest, reference, tmp_path):
    path = tmp_path / "patterns.zarr"

    def stop_after_first(report: BlockReport, done: int, total: int) -> None:
        raise Interrupted(f"interrupted after block [{report.start}, {report.stop})")

    with pytest.raises(Interrupted):
        run_simulation(manifest, path, SUBSET, progress=stop_after_first)
    assert st.completed_materials(path).tolist() == [True, True] + [False] * 7
    seen: list[tuple[int, int]] = []
    resumed = run_simulation(
        manifest, path, SUBSET, progress=lambda r, d, t: seen.append((r.start, r.stop))
    )
    assert (resumed.blocks_submitted, resumed.blocks_skipped) == (N_BLOCKS - 1, 1)
    assert sorted(seen) == [(2, 4), (4, 6), (6, 8), (8, 9)]
    assert (resumed.simulated, resumed.skipped) == (6, 2)
    assert_stores_equal(path, reference[0])


def test_worker_killed_mid_run_then_rerun_equals_uninterrupted(
    manifest, reference, client, tmp_path
):
    path = tmp_path / "patterns.zarr"
    killed: list[tuple[int, list[str]]] = []

    def kill_a_busy_worker(report: BlockReport, done: int, total: int) -> None:
        if killed:
            return
        busy = {addr: keys for addr, keys in client.processing().items() if keys}
        victim = next(iter(busy), None) or next(iter(client.scheduler_info()["workers"]))
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, list(busy.get(victim, ()))))

    try:
        run_simulation(manifest, path, SUBSET, client=client, progress=kill_a_busy_worker)
        lost = 0
    except StoreError as exc:  # the killed worker's blocks failed; the others finished
        assert "KilledWorker" in str(exc) and "run again to resume" in str(exc)
        lost = int(str(exc).split(" of ")[0])
    assert killed, "no worker was killed"
    assert lost == len(killed[0][1])  # exactly the blocks the dead worker held
    done = st.completed_materials(path)
    incomplete = sum(not done[a:b].all() for a, b in plan_blocks(len(manifest), 2))
    assert incomplete == lost
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker
    rerun = run_simulation(manifest, path, SUBSET, client=client)
    assert (rerun.blocks_submitted, rerun.blocks_skipped) == (lost, N_BLOCKS - lost)
    assert st.completed_materials(path).all()
    assert_stores_equal(path, reference[0])


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(0.1)


def _scheduler_address(scheduler_file: Path) -> str | None:
    try:
        return json.loads(scheduler_file.read_text())["address"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def test_existing_scheduler_from_settings(manifest, reference, tmp_path):
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_CONFIG": str(REPO / "deploy" / "dask")}  # deploy/README.md
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
                + ["--scheduler-file", str(scheduler_file)],
                cwd=REPO,
                env=env,
                stdout=(logs / "scheduler.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_for(lambda: _scheduler_address(scheduler_file), 30, "dask scheduler")
        procs.append(
            subprocess.Popen(
                [dask, "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1"]
                + ["--nthreads", "1", "--nworkers", "1", "--no-dashboard"]
                + ["--local-directory", str(tmp_path / "worker-space")],
                cwd=REPO,
                env=env,
                stdout=(logs / "worker.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        )
        address = _scheduler_address(scheduler_file)
        assert address.startswith("tcp://127.0.0.1:")
        settings = Settings(data_dir=tmp_path / "data", dask_address=address)
        path = tmp_path / "patterns.zarr"
        with dask_client(settings) as client:
            client.wait_for_workers(1, timeout=60)
            report = run_simulation(manifest, path, SUBSET, client=client)
            assert report.blocks_submitted == N_BLOCKS
            assert report.quarantined.keys() == {BROKEN_ID}
            worker_env = client.run(_worker_environment())
            assert list(worker_env.values()) == [WORKER_ENVIRONMENT]
        assert_stores_equal(path, reference[0])
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_manifest_folder_is_read_and_its_file_hash_recorded(manifest, tmp_path):
    from xrdpipe.structures.manifest import MANIFEST_FILE, manifest_sha256

    folder = tmp_path / "demo"
    folder.mkdir()
    frame = manifest.iloc[:3].assign(dimensionality=pd.array([3, 3, 3], dtype="Int64"))
    frame.to_parquet(folder / MANIFEST_FILE)
    report = run_simulation(folder, folder / "patterns.zarr", SUBSET)
    assert (report.n_materials, report.blocks_submitted, report.simulated) == (3, 2, 3)
    attrs = st.open_store(folder / "patterns.zarr").attrs
    assert attrs["manifest_sha256"] == manifest_sha256(folder / MANIFEST_FILE)
    assert report.fingerprint == attrs["fingerprint"]


def test_store_at_a_file_url_and_the_settings_store_root(manifest, tmp_path):
    from xrdpipe.config import Settings

    settings = Settings(data_dir=tmp_path / "data", store_root=f"file://{tmp_path}/stores/")
    url = settings.store_path("tiny")
    assert url == f"file://{tmp_path}/stores/tiny/patterns.zarr"
    assert Settings(data_dir=tmp_path).store_path("x") == tmp_path / "x" / "patterns.zarr"
    report = run_simulation(manifest.iloc[:2], url, SUBSET)
    assert report.simulated == 2
    assert (tmp_path / "stores" / "tiny" / "patterns.zarr" / "zarr.json").is_file()
    assert st.completed_materials(url).all()
    assert st.load_completed(url).sizes["material"] == 2


def test_scattering_settings_reach_the_simulator_and_defaults_keep_fingerprints(tmp_path):
    """anomalous f', f'' and CIF displacement parameters come from the subset's simulation."""
    from xrdpipe.config.catalog import Filters
    from xrdpipe.diffraction import peaks
    from xrdpipe.structures.manifest import CifEntry, build_manifest, structure_from_json

    plain_sim = SimulationConfig(n_train_strains=1, n_test_strains=1)
    assert "scattering" not in plain_sim.model_dump()  # old store fingerprints still hold
    sim = plain_sim.model_copy(
        update={"scattering": "anomalous", "displacement": "cif", "overall_b": 0.7}
    )
    assert sim.model_dump()["scattering"] == "anomalous"
    # COD 1501508 gives B per site in its CIF; the manifest keeps them when asked to
    cif = CIF_DIR / "1501508.cif"
    entry = CifEntry("1501508", cif, hashlib.sha256(cif.read_bytes()).hexdigest(), "test", "now")
    subset = SubsetConfig(simulation=sim, filters=Filters(allow_partial_occupancy=True))
    manifest = build_manifest([entry], subset).manifest
    structure = structure_from_json(manifest.loc[0, "structure_json"])
    assert "b_iso" in structure.site_properties
    plain = simulate_material(structure, 0, plain_sim, seed=0, n_peaks=4000)
    measured = simulate_material(structure, 0, sim, seed=0, n_peaks=4000)
    direct = peaks.simulate_peaks(
        structure,
        measured["strain_tensor"],
        scattering="anomalous",
        displacement="cif",
        overall_b=0.7,
    )
    np.testing.assert_array_equal(measured["intensity_raw"], direct.intensity_raw)
    ok = plain["peak_mask"]
    assert not np.allclose(measured["intensity_raw"][ok], plain["intensity_raw"][ok], rtol=1e-3)
