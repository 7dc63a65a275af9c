"""The fetch flow under Prefect's test harness, against the COD test server on 127.0.0.1."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.support import SHARED_DIR

REFERENCE = SHARED_DIR / "cod-sample" / "reference.csv"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XRDPIPE_COD_MIN_INTERVAL_S", "0")
    monkeypatch.setenv("XRDPIPE_COD_CONCURRENCY", "8")
    return tmp_path / "data"


def test_whole_sample_through_the_flow(prefect_harness, cod_server, data_dir):
    from flows.fetch import fetch

    result = fetch(subset="hoefer2024", cod_url=cod_server.url)
    folder = data_dir / "hoefer2024"
    manifest = pd.read_parquet(folder / "manifest.parquet")
    quarantine = pd.read_parquet(folder / "quarantine.parquet")
    reference = pd.read_csv(REFERENCE, dtype={"cod_id": str}).set_index("cod_id")

    # every kept entry's crystal system is the reference's
    assert len(manifest) == 50
    ref = reference.loc[manifest["cod_id"]]
    assert (manifest["crystal_system"].to_numpy() == ref["crystal_system"].to_numpy()).all()
    assert (manifest["space_group_number"].to_numpy() == ref["sg_number"].to_numpy()).all()
    assert not manifest["has_partial_occupancy"].any()
    # nothing is lost: every entry of the sample is kept or quarantined, once
    assert result["kept"] + quarantine["cod_id"].nunique() == 265
    assert set(manifest["cod_id"]).isdisjoint(quarantine["cod_id"])
    reasons = set(quarantine["reason"])
    assert {"organic", "partial_occupancy"} <= reasons
    # each CIF was downloaded exactly once
    cif_requests = {p: n for p, n in cod_server.requests.items() if p.endswith(".cif")}
    assert all(n == 1 for n in cif_requests.values())

    # a second run is served from the cache: no CIF is downloaded again
    fetch(subset="hoefer2024", cod_url=cod_server.url)
    assert {p: n for p, n in cod_server.requests.items() if p.endswith(".cif")} == cif_requests
    again = pd.read_parquet(folder / "manifest.parquet")
    assert again["cod_id"].tolist() == manifest["cod_id"].tolist()


def test_fetch_demo_without_network(tmp_path):
    """`xrdpipe fetch demo` under a guard that refuses every non-loopback connection."""
    env = dict(os.environ, XRDPIPE_DATA_DIR=str(tmp_path / "data"))
    env["PYTHONPATH"] = str(REPO / "tests" / "netguard") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import netguard; from xrdpipe.cli import app; app()",
            "fetch",
            "demo",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "network guard active" in proc.stderr
    manifest = pd.read_parquet(tmp_path / "data" / "demo" / "manifest.parquet")
    assert len(manifest) >= 30
    assert manifest["cod_id"].is_unique
    assert "kept" in proc.stdout and "quarantined" in proc.stdout
