"""The N/K grid end to end: Prefect harness, real MLflow SQLite store, parent and child runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.support import TINY_PHASE_PRESET, TINY_SUBSET
from xrdpipe.config import default_catalog_path
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.grid import CNN, GridSpec, cell_preset, grid_table, wide_table
from xrdpipe.evaluation.metrics import total_variation_distance


def _catalog(tmp_path) -> str:
    data = yaml.safe_load(default_catalog_path().read_text())
    data["subsets"]["tiny"] = json.loads(TINY_SUBSET.model_dump_json())
    data["presets"]["phase_fractions"]["tiny"] = json.loads(
        TINY_PHASE_PRESET.model_copy(update={"epochs": 2}).model_dump_json()
    )
    data["presets"]["classifier"]["tiny"] = {  # 1501 points leave 12 positions to bin
        "model": {"variants": ["binned"], "pool_bins": 8},
        "train": {"batch_size": 16, "epochs": 3, "num_threads": 1},
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def tracking_uri(tiny_store, tmp_path, monkeypatch) -> str:
    """The tiny store's data dir and a fresh SQLite MLflow store, in the environment."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tiny_store.parent.parent))
    monkeypatch.setenv("XRDPIPE_MLFLOW_TRACKING_URI", uri)
    return uri


def test_grid_spec_validates_and_scales_the_budget_with_n():
    with pytest.raises(ConfigError, match="not among the allowed"):
        GridSpec(baselines=("svm",))
    spec = GridSpec(n_values=(10, 5), k_values=(3,), seeds=(0, 1), minutes_per_material=0.5)
    assert spec.cells() == [(5, 3, 0), (5, 3, 1), (10, 3, 0), (10, 3, 1)]
    assert cell_preset(TINY_PHASE_PRESET, 10, 0.5).train.max_minutes == 5.0
    assert cell_preset(TINY_PHASE_PRESET, 10, None) == TINY_PHASE_PRESET


def test_tiny_grid_through_prefect_logs_parent_children_plots_and_report(
    prefect_harness,
    tiny_store,
    tracking_uri,
    tmp_path,
):
    from mlflow.tracking import MlflowClient

    from flows.evaluate import evaluate

    uri = tracking_uri
    out = evaluate(
        subset="tiny",
        preset="tiny",
        n_values=[2, 3],
        k_values=[2],
        seeds=[0],
        baselines=["ridge", "nnls_reference"],
        n_baseline_train=300,
        catalog=_catalog(tmp_path),
    )
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(out["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["grid.n_values"] == "[2, 3]"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(r.info.run_name for r in children) == ["N2-K2-s0", "N3-K2-s0"]
    table = pd.DataFrame(out["table"])
    assert set(table["method"]) == {CNN, "ridge", "nnls_reference"}
    for child in children:
        n = int(child.data.tags["xrdpipe.grid_cell"][1])
        row = table[(table.N == n) & (table.method == CNN)].iloc[0]
        # the numbers in the table are the child's metrics and the parent's
        assert child.data.metrics["test_tvd_mean"] == pytest.approx(row["tvd_mean"])
        assert parent.data.metrics[f"cnn_tvd_N{n}_K2_s0"] == pytest.approx(row["tvd_mean"])
        ridge = table[(table.N == n) & (table.method == "ridge")].iloc[0]
        assert child.data.metrics["baseline.ridge.tvd_mean"] == pytest.approx(ridge["tvd_mean"])
        assert 0.0 <= row["tvd_mean"] <= 1.0
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert [m.step for m in history] == [1, 2]
        # every cell's model is registered; the first version of each becomes champion
        name = f"xrdpipe-phase-fractions-tiny-N{n}-K2"
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.run_id == child.info.run_id
        assert child.data.tags["xrdpipe.promoted"] == "True"
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"fractions_scatter.png", "learning_curves.png", "promotion.json"} <= artifacts
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {
        "grid_table.csv",
        "figure3_tvd_vs_n.png",
        "tvd_by_method.png",
        "report.html",
    } <= artifacts
    report = open(out["report"], encoding="utf-8").read()
    cnn_n2 = table[(table.N == 2) & (table.method == CNN)]["tvd_mean"].iloc[0]
    assert f"{cnn_n2:.3f}" in report and "data:image/png;base64," in report
    assert "paper 002" in report


def test_grid_table_aggregates_seeds_like_pandas():
    from dataclasses import dataclass, field

    @dataclass
    class _Train:
        wall_s: float = 1.0

    @dataclass
    class _Phase:
        test_tvd_mean: float
        test_tvd_std: float = 0.1
        test_mae: float = 0.0
        train: _Train = field(default_factory=_Train)

    from xrdpipe.evaluation.grid import CellResult

    values = {(5, 3, 0): 0.05, (5, 3, 1): 0.07, (10, 3, 0): 0.09}
    cells = [CellResult(n, k, s, _Phase(v)) for (n, k, s), v in values.items()]
    table = grid_table(cells)
    five = table[(table.N == 5) & (table.method == CNN)].iloc[0]
    assert five["tvd_mean"] == pytest.approx(0.06)
    assert five["tvd_std_over_seeds"] == pytest.approx(np.std([0.05, 0.07], ddof=1))
    assert five["n_seeds"] == 2
    assert wide_table(table)[CNN].tolist() == ["0.060 ± 0.014", "0.090 ± 0.000"]


def test_tvd_is_half_the_l1_distance():
    pred = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    true = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(total_variation_distance(pred, true), [0.5, 1.0])


def test_cells_run_in_parallel_on_dask_and_log_from_the_parent(
    tiny_store,
    tmp_path,
):
    from mlflow.tracking import MlflowClient

    from xrdpipe.config import Settings
    from xrdpipe.stages.evaluate import run_evaluation

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(data_dir=tiny_store.parent.parent, mlflow_tracking_uri=uri)
    spec = GridSpec(n_values=(2, 3), k_values=(2,), seeds=(0,), baselines=("nnls_reference",))
    outcome = run_evaluation(
        settings,
        "tiny",
        TINY_SUBSET,
        "tiny",
        TINY_PHASE_PRESET.model_copy(update={"epochs": 1}),
        spec,
        cell_workers=2,
        register=False,
        log=lambda _: None,
    )
    client = MlflowClient(tracking_uri=uri)
    children = client.search_runs(
        [client.get_run(outcome.parent_run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'",
    )
    assert len(children) == 2
    assert set(outcome.table["method"]) == {CNN, "nnls_reference"}
    assert outcome.report_path.is_file()


def test_classifier_tables_command_logs_one_run_with_every_method_and_the_report(
    tiny_store,
    tracking_uri,
    tmp_path,
):
    """``xrdpipe evaluate-classifiers``: paper 000's tables into MLflow and a report."""
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from xrdpipe.cli import app
    from xrdpipe.evaluation.cv import METHODS

    uri = tracking_uri
    result = CliRunner().invoke(
        app, ["evaluate-classifiers", "tiny", "--preset", "tiny", "--catalog", _catalog(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("xrdpipe/classification-cv").experiment_id]
    )
    assert run.info.status == "FINISHED"
    assert run.data.tags["xrdpipe.task"] == "classification-cv"
    metrics = run.data.metrics
    for protocol in ("strain", "material"):
        for method in METHODS:
            assert 0.0 <= metrics[f"clf_{protocol}_{method}_accuracy"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "classification_table.csv"} <= artifacts
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "classification_table.csv"))
    rf = table.set_index("method").loc["random_forest", "strain accuracy"]
    assert float(rf.split(" ± ")[0]) == pytest.approx(
        metrics["clf_strain_random_forest_accuracy"], abs=5e-4
    )
    report = (tiny_store.parent.parent / "reports").glob(
        f"tiny-classification-{run.info.run_id[:8]}*"
    )
    assert "binned" in next(report).read_text()


def test_the_flows_synthetic_manifest_reaches_the_classifier_tables(tmp_path):
    """``evaluate(classification_synthetic_manifest=...)`` goes through ``run_evaluation`` to
    the tables' options check: a missing manifest is named before any run starts."""
    from xrdpipe.config import Settings, load_catalog, resolve_subset
    from xrdpipe.stages.evaluate import run_evaluation

    settings = Settings(data_dir=tmp_path)
    config = resolve_subset(load_catalog(None, settings), "demo", settings)
    missing = tmp_path / "synthetic" / "manifest.parquet"
    with pytest.raises(ConfigError, match="synthetic_manifest .*manifest.parquet' is not a file"):
        run_evaluation(
            settings, "demo", config, "tiny", TINY_PHASE_PRESET, GridSpec(),
            classification_subset="demo", classification_synthetic_manifest=missing,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []  # nothing was logged or written
