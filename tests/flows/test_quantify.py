"""The ``quantify`` flow under Prefect's test harness, and its deployment ``quantify/phases``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.support import CIF_DIR

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "model": {"width": 0.1},
    "train": {"batch_size": 32, "lr": 2e-3, "epochs": 1, "device": "cpu"},
    "split": {"epoch_size": 64, "n_validation": 32, "n_test": 32},
    "mixtures": {"fraction_mode": "weight", "phase_draw": "distinct"},
}


@pytest.fixture
def dask_scheduler():
    """A real Dask scheduler with two one-thread workers in this process (no spawn cost)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_quantify_flow_trains_once_then_quantifies_a_scan(
    prefect_harness, dask_scheduler, tmp_path, monkeypatch
):
    from flows.quantify import quantify
    from xrdpipe.config import Settings, default_catalog_path
    from xrdpipe.stages.quantify_ensemble import validation_mixtures

    phases = tmp_path / "my phases"
    phases.mkdir()
    shutil.copy(CIF_DIR / "1009031.cif", phases / "PdO (tetragonal).cif")
    shutil.copy(CIF_DIR / "2100862.cif", phases / "BaTiO3 [lab].cif")
    data = yaml.safe_load(default_catalog_path().read_text())
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    data["presets"]["phase_fractions"]["tiny"] = TINY
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XRDPIPE_CATALOG", str(catalog))
    monkeypatch.setenv("XRDPIPE_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("XRDPIPE_DASK_ADDRESS", dask_scheduler)

    first = quantify(scans=[], phases=str(phases), preset="tiny", members=2)
    assert first["trained"] and first["registered_model"] == "xrdpipe-quantify-phases-my_phases"

    from xrdpipe.config import PhaseFractionPreset, load_catalog

    settings = Settings()
    written = load_catalog(tmp_path / "data" / "phases-my_phases" / "catalog.yaml", settings)
    subset = written.subset("phases-my_phases")
    drawn = validation_mixtures(
        settings.store_path("phases-my_phases"),
        subset,
        PhaseFractionPreset.model_validate(TINY),
        ["BaTiO3_lab", "PdO_tetragonal"],
        2,
    )
    grid = np.linspace(
        subset.profile.two_theta_min, subset.profile.two_theta_max, subset.profile.n_points
    )
    scan = tmp_path / "sample A.xy"
    np.savetxt(scan, np.column_stack([grid, 50 + 1e4 * drawn.patterns[0].numpy()]), fmt="%.5f")

    second = quantify(scans=[str(scan)], phases=str(phases), preset="tiny", members=2)
    assert not second["trained"] and second["version"] == first["version"] == "1"
    assert [r["phase"] for r in second["rows"]] == ["BaTiO3 [lab]", "PdO (tetragonal)"]
    assert sum(r["wt_percent"] for r in second["rows"]) == pytest.approx(100.0, rel=1e-4)
    assert all(r["sigma"] > 0 for r in second["rows"])
    document = json.loads(Path(second["files"]["json"]).read_text())
    assert document["rows"] == second["rows"]
    assert Path(second["out_dir"]).parent == tmp_path / "data" / "phases-my_phases" / "quantify"


def test_the_deployment_runs_the_flow_with_parameters_it_accepts():
    from flows.quantify import quantify

    config = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "phases"]
    assert deployment["entrypoint"] == "flows/quantify.py:quantify"
    assert quantify.name == "quantify"
    validated = quantify.validate_parameters(deployment["parameters"])
    assert validated["scans"] == [] and validated["preset"] == "phase-set"
    assert deployment["work_pool"]["name"] == "xrdpipe"
