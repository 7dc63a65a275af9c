"""``xrdpipe quantify``'s stage on a 2-phase set of oddly named CIFs: model reuse, rows, sigma."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support import CIF_DIR
from xrdpipe.config import ProfileConfig, Settings, SimulationConfig, SubsetConfig
from xrdpipe.config.catalog import Filters
from xrdpipe.stages.phase_set import PhaseSet

PHASES = {"PdO (tetragonal).cif": "1009031.cif", "Ba titanate #2.cif": "2100862.cif"}
TINY = {
    "model": {"width": 0.1},
    "train": {"batch_size": 32, "lr": 2e-3, "epochs": 1, "device": "cpu"},
    "split": {"epoch_size": 64, "n_validation": 64, "n_test": 32},
    "mixtures": {"fraction_mode": "weight", "phase_draw": "distinct"},
}


def lab_phase_set(root: Path) -> tuple[PhaseSet, Settings]:
    from xrdpipe.config import default_catalog_path

    folder = root / "lab phases"
    folder.mkdir(parents=True)
    for name, source in PHASES.items():
        shutil.copy(CIF_DIR / source, folder / name)
    subset = SubsetConfig(
        source="phases",
        phases=folder,
        filters=Filters(deduplicate=False),
        seed=3,
        simulation=SimulationConfig(n_train_strains=6, n_test_strains=2, strain_mode="symmetry"),
        profile=ProfileConfig(n_points=1501),
    )
    data = yaml.safe_load(default_catalog_path().read_text())
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    data["subsets"]["phases-lab"] = json.loads(subset.model_dump_json())
    data["presets"]["phase_fractions"]["tiny"] = TINY
    catalog = root / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data))
    settings = Settings(
        data_dir=root / "data",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        dask_workers=2,
    )
    return PhaseSet("phases-lab", catalog, subset, "tiny"), settings


def write_scans(
    settings: Settings, model, folder: Path, n: int = 2
) -> tuple[list[Path], np.ndarray]:
    """Mixtures rendered by the project's own engine (the validation draw), as .xy counts."""
    from xrdpipe.stages.quantify_ensemble import validation_mixtures

    subset = model.subset
    preset_cfg = _preset()
    drawn = validation_mixtures(
        settings.store_path(model.phase_set), subset, preset_cfg, model.materials, 2
    )
    two_theta = np.linspace(subset.profile.two_theta_min, subset.profile.two_theta_max,
                            subset.profile.n_points)  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    mixtures = drawn.phase_fractions.numpy()
    order = np.argsort(-mixtures.min(axis=1))[:n]  # two-phase mixtures first
    for i, row in enumerate(order):
        counts = 100 + 1e4 * drawn.patterns[row].numpy()
        path = folder / f"scan {i}.xy"
        np.savetxt(path, np.column_stack([two_theta, counts]), fmt="%.5f")
        paths.append(path)
    return paths, mixtures[order]


def _preset():
    from xrdpipe.config import PhaseFractionPreset

    return PhaseFractionPreset.model_validate(TINY)


@pytest.fixture(scope="module")
def dask_scheduler():
    """A real Dask scheduler with two one-thread workers in this process (no spawn cost)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def quantified(tmp_path_factory, dask_scheduler):
    from xrdpipe.stages.quantify import quantify_phase_set

    root = tmp_path_factory.mktemp("quantify")
    phase_set, settings = lab_phase_set(root)
    settings = settings.model_copy(update={"dask_address": dask_scheduler})
    lines: list[str] = []
    first = quantify_phase_set([], phase_set, settings, preset="tiny", members=2, log=lines.append)
    from xrdpipe import tracking
    from xrdpipe.stages.quantify_model import ensure_model

    tracking.configure(settings.tracking_uri())
    catalog_model = ensure_model(
        settings, phase_set.name, phase_set.subset, "tiny", _preset(), members=2, log=lines.append
    )
    scans, truth = write_scans(settings, catalog_model, root / "scans")
    second = quantify_phase_set(
        scans, phase_set, settings, preset="tiny", members=2, refine=True, log=lines.append
    )
    return {
        "first": first,
        "second": second,
        "model": catalog_model,
        "settings": settings,
        "lines": lines,
        "scans": scans,
        "truth": truth,
    }


def test_the_model_is_reused_when_its_fingerprint_matches(quantified):
    from mlflow.tracking import MlflowClient

    first, second = quantified["first"], quantified["second"]
    assert first.trained and not second.trained and not quantified["model"].trained
    assert first.model == second.model == ("xrdpipe-quantify-phases-lab", "1")
    assert second.ensemble.members == 2 and second.ensemble.version == "1"
    assert (
        sum("reusing xrdpipe-quantify-phases-lab version 1" in x for x in quantified["lines"]) == 2
    )
    client = MlflowClient(tracking_uri=quantified["settings"].tracking_uri())
    versions = client.search_model_versions("name = 'xrdpipe-quantify-phases-lab'")
    assert len(versions) == 1
    parent = versions[0].run_id
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent}'",
    )
    assert sorted(r.data.params["data.seed"] for r in children) == ["0", "1"]
    assert len(client.get_metric_history(children[0].info.run_id, "train_loss")) == 1


def test_rows_csv_and_json_have_every_column_and_two_members_give_sigma(quantified):
    from xrdpipe.stages.quantify_scans import COLUMNS

    result = quantified["second"]
    names = quantified["model"].names
    assert sorted(names) == ["Ba titanate #2", "PdO (tetragonal)"]
    assert len(result.rows) == 4 and all(list(r) == list(COLUMNS) for r in result.rows)
    frame = pd.read_csv(result.out_dir / "quantify.csv")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["scan"].map(lambda s: Path(s).name).tolist() == [
        "scan 0.xy", "scan 0.xy", "scan 1.xy", "scan 1.xy",
    ]  # fmt: skip
    document = json.loads((result.out_dir / "quantify.json").read_text())
    assert [r["phase"] for r in document["rows"]] == names * 2
    for row in result.rows:
        assert row["sigma"] > 0  # two members disagree a little on every phase
        assert row["refined_sigma"] >= row["sigma"]
        assert 0 < row["rwp"] < 1
    for scan in result.scans:
        np.testing.assert_allclose(100 * scan.weight_fraction.sum(), 100.0, rtol=1e-5)
    assert (result.out_dir / "quantify.html").read_text().count(".png'") == 2
    assert len(list(result.out_dir.glob("*.png"))) == 2


def test_internal_standard_rescales_by_hand(quantified, tmp_path):
    from xrdpipe.readers import read_pattern
    from xrdpipe.stages.quantify_scans import AMORPHOUS, InternalStandard, quantify_patterns

    model = quantified["model"]
    pattern = read_pattern(quantified["scans"][0])
    (plain,) = quantify_patterns([pattern], model)
    standard = InternalStandard(model.names[0], 20.0)
    (scaled,) = quantify_patterns([pattern], model, standard=standard)
    w, s = plain.weight_fraction, plain.spread
    factor = 20.0 / w[0]  # the standard reads w[0] of the crystalline part but is 20 wt%
    rows = {r["phase"]: r for r in scaled.rows()}
    assert rows[model.names[0]]["wt_percent"] == pytest.approx(20.0)
    assert rows[model.names[1]]["wt_percent"] == pytest.approx(factor * w[1])
    assert rows[model.names[1]]["sigma"] == pytest.approx(factor * s[1])
    assert rows[AMORPHOUS]["wt_percent"] == pytest.approx(100.0 - factor)
    assert rows[AMORPHOUS]["sigma"] == pytest.approx(20.0 * s[0] / w[0] ** 2)
    assert "internal standard" in scaled.unit
    from xrdpipe.stages.quantify_report import write_outputs

    files = write_outputs(tmp_path, [scaled], {"phase_set": "phases-lab"}, {})
    frame = pd.read_csv(files["csv"])
    assert frame["phase"].tolist() == [*model.names, AMORPHOUS]
    assert frame["wt_percent"].sum() == pytest.approx(100.0)  # standard + rest + amorphous
    assert len(list(tmp_path.glob("*.png"))) == 1  # the scan and the CNN's bars


def test_detection_limit_is_three_sigma_of_the_blank_predictions():
    from xrdpipe.stages.quantify_ensemble import detection_limits

    truth = np.zeros((12, 2))
    truth[:, 0] = 1.0
    truth[:2] = [0.0, 1.0]  # phase 0 absent twice only: too few blanks
    predicted = np.zeros((12, 2))
    predicted[:, 1] = np.linspace(0.0, 0.011, 12)  # phase 1's blank readings
    limits = detection_limits(predicted, truth)
    assert np.isnan(limits[0])
    blank = np.linspace(0.0, 0.011, 12)[2:]
    assert limits[1] == pytest.approx(3 * np.std(blank, ddof=1))


def test_present_needs_the_floor_and_the_detection_limit(quantified):
    from xrdpipe.readers import read_pattern
    from xrdpipe.stages.quantify_scans import quantify_patterns

    model = quantified["model"]
    (q,) = quantify_patterns([read_pattern(quantified["scans"][0])], model)
    q.weight_fraction = np.array([0.995, 0.005])
    q.detection_limits = np.array([np.nan, 0.002])
    assert q.present().tolist() == [True, False]  # 0.5 wt% is under the 1 wt% floor
    q.weight_fraction = np.array([0.97, 0.03])
    q.detection_limits = np.array([0.01, 0.04])
    assert q.present().tolist() == [True, False]  # 3 wt% is under its 4 wt% limit


def test_a_peak_no_phase_explains_is_flagged_on_the_scan(quantified, tmp_path):
    import re

    from xrdpipe.readers import read_pattern
    from xrdpipe.stages.quantify import phase_structures
    from xrdpipe.stages.quantify_scans import quantify_patterns

    model = quantified["model"]
    two_theta, counts = np.loadtxt(quantified["scans"][0], unpack=True)
    window = 40  # points (~1.9 deg): the quietest stretch between 25 and 70 deg gets a peak
    inside = np.flatnonzero((two_theta > 25) & (two_theta < 70))
    loudest = [counts[i - window : i + window].max() for i in inside]
    centre = float(two_theta[inside[int(np.argmin(loudest))]])
    extra = 0.3 * counts.max() * np.exp(-4 * np.log(2) * (two_theta - centre) ** 2 / 0.2**2)
    path = tmp_path / "with impurity.xy"
    np.savetxt(path, np.column_stack([two_theta, counts + extra]), fmt="%.5f")
    structures = phase_structures(quantified["settings"], model)
    (q,) = quantify_patterns([read_pattern(path)], model, refine=True, structures=structures)
    found = [
        float(m.group(1))
        for flag in q.scan_flags
        if (m := re.match(r"residual peak at 2theta ([0-9.]+) deg", flag))
    ]
    assert any(abs(f - centre) < 0.15 for f in found), (centre, q.scan_flags)
    assert all(any(f.startswith("residual peak") for f in row["flags"]) for row in q.rows())
