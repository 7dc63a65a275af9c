"""The simulate flow and its deployment under Prefect's test harness, on a tiny subset."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support import SHARED_DIR
from xrdpipe.config import default_catalog_path

REPO = Path(__file__).resolve().parents[2]
TINY_IDS = ["1000054", "1009031", "2003120", "2100862", "2242045", "3000024", "9008488"]


@pytest.fixture
def tiny_catalog(tmp_path) -> Path:
    data = yaml.safe_load(default_catalog_path().read_text())
    data["subsets"]["tiny"] = {
        "description": "seven small COD structures, one per crystal system",
        "source": "mirror",
        "mirror_dir": str(SHARED_DIR / "cod-sample" / "cif"),
        "query": {"ids": TINY_IDS},
        "seed": 3,
        "simulation": {
            "n_train_strains": 6,
            "n_test_strains": 3,
            "strain_mode": "symmetry",
            "materials_per_chunk": 2,
        },
        "profile": {"n_points": 1401},
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_simulate_flow_fetches_simulates_and_resumes(
    prefect_harness, tiny_catalog, tmp_path, monkeypatch
):
    from flows.simulate import simulate
    from xrdpipe.store import load_completed, open_store

    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XRDPIPE_DASK_WORKERS", "2")
    first = simulate(subset="tiny", catalog=str(tiny_catalog))
    store_path = tmp_path / "data" / "tiny" / "patterns.zarr"
    assert first["simulated"] == 7 and first["blocks_computed"] == 4
    ds = load_completed(store_path)
    assert sorted(ds["cod_id"].values.tolist()) == sorted(TINY_IDS)
    assert ds.sizes["strain"] == 6 + 3 + 1
    assert (ds["n_peaks"].values > 0).all()
    assert set(ds["crystal_system"].values.tolist()) == {
        "trigonal",
        "tetragonal",
        "cubic",
        "triclinic",
        "monoclinic",
        "hexagonal",
    }
    profiles = open_store(store_path)  # the peak store is untouched by profile rendering
    assert profiles.attrs["strain_mode"] == "symmetry"
    import xarray as xr

    group = xr.open_zarr(store_path, group=first["profiles"], zarr_format=3, consolidated=False)
    assert group["completed"].values.all()
    assert group.sizes["two_theta"] == 1401
    np.testing.assert_allclose(group["profile"].max(dim="two_theta").values, 1.0, rtol=1e-6)

    again = simulate(subset="tiny", catalog=str(tiny_catalog))
    assert again["blocks_computed"] == 0 and again["blocks_skipped"] == 4

    # the CLI's mixture plot on this store
    png = tmp_path / "mix.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xrdpipe.cli",
            "plot-mixtures",
            "tiny",
            "-n",
            "4",
            "-k",
            "3",
            "--catalog",
            str(tiny_catalog),
            "--out",
            str(png),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert png.stat().st_size > 20_000


def test_deployment_simulate_cod_runs_on_a_worker(prefect_harness, tiny_catalog, tmp_path):
    """deploy/prefect.yaml, deployed to the harness's API and run by a real process worker."""
    from prefect.settings import PREFECT_API_URL

    env = dict(
        os.environ,
        PREFECT_API_URL=PREFECT_API_URL.value(),
        XRDPIPE_DATA_DIR=str(tmp_path / "data"),
        XRDPIPE_PROJECT_DIR=str(REPO),
        XRDPIPE_CATALOG=str(tiny_catalog),
        XRDPIPE_DASK_WORKERS="1",
    )
    prefect = [sys.executable, "-m", "prefect"]

    def run(*args, timeout=300):
        proc = subprocess.run(
            [*prefect, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    run("work-pool", "create", "xrdpipe", "--type", "process", "--overwrite")
    run("--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")
    out = run("deployment", "run", "simulate/cod", "--param", "subset=tiny")
    assert "Created flow run" in out
    run("worker", "start", "--pool", "xrdpipe", "--run-once", timeout=600)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        names = {(d.name, d.entrypoint) for d in deployments}
        assert ("cod", "flows/simulate.py:simulate") in names
        assert ("cod", "flows/fetch.py:fetch") in names
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["cod"]))
        )
        states = {r.state_type.value for r in runs}
    assert states == {"COMPLETED"}, states
    assert (tmp_path / "data" / "tiny" / "manifest.parquet").is_file()
    from xrdpipe.store import completed_materials

    assert completed_materials(tmp_path / "data" / "tiny" / "patterns.zarr").all()
