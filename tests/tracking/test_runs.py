"""MLflow tracking of both tasks: a real SQLite store, local artifacts, registered models."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support import (
    TINY_CLASSIFIER_PRESET,
    TINY_PHASE_PRESET,
    TINY_SUBSET,
)
from xrdpipe import tracking
from xrdpipe.stages.train import train_task


@pytest.fixture
def mlflow_uri(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.configure(uri, artifact_root=tmp_path / "artifacts")
    yield uri
    mlflow.set_tracking_uri("")


def test_flatten_and_names():
    flat = tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x" * 7000, "e": {}})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]" and flat["e"] == "{}"
    assert len(flat["d"]) == tracking.MAX_PARAM_LENGTH
    assert tracking.registered_model_name("phase-fractions", "hoefer2024", 5) == (
        "xrdpipe-phase-fractions-hoefer2024-N5"
    )
    assert tracking.registered_model_name("space-group", "acnn", protocol="material") == (
        "xrdpipe-space-group-acnn-material"
    )


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def test_phase_fraction_run_is_logged_registered_and_loads_back(tiny_store, mlflow_uri, tmp_path):
    result, tracked = train_task(
        "phase-fractions",
        "tiny",
        TINY_SUBSET,
        "tiny",
        TINY_PHASE_PRESET,
        tiny_store,
        n_materials=3,
        max_phases=2,
        seed=0,
        progress=False,
    )
    client = MlflowClient()
    run = client.get_run(tracked.run_id)
    params = run.data.params
    assert params["args.n_materials"] == "3" and params["args.max_phases"] == "2"
    assert params["preset.model.width"] == "0.1" and params["model.width"] == "0.1"
    assert params["subset.seed"] == "3" and params["train.lr"] == "0.002"
    assert params["data.materials"] == str(result.materials).replace("'", '"')
    assert params["mixtures.max_phases"] == "2"
    tags = run.data.tags
    assert tags["xrdpipe.test_set_sha256"] == result.test_set_sha256
    assert tags["xrdpipe.store_fingerprint"] == result.store["store_fingerprint"]
    assert tags["xrdpipe.manifest_sha256"] == result.store["manifest_sha256"]
    assert "xrdpipe.git_commit" in tags
    for name in ("train_loss", "val_loss", "val_tvd", "lr", "samples_per_s", "data_time_fraction"):
        history = client.get_metric_history(tracked.run_id, name)
        assert [m.step for m in history] == [1, 2, 3, 4], name
    losses = [m.value for m in client.get_metric_history(tracked.run_id, "train_loss")]
    assert losses[-1] < losses[0]
    assert run.data.metrics["test_tvd_mean"] == pytest.approx(result.test_tvd_mean)
    assert {
        "learning_curves.png",
        "fractions_scatter.png",
        "config.yaml",
        "results.json",
        "checkpoint",
    } <= _artifacts(client, tracked.run_id)
    png = client.download_artifacts(tracked.run_id, "fractions_scatter.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    assert tracked.registered_name == "xrdpipe-phase-fractions-tiny-N3-K2"
    version = client.get_model_version_by_alias(tracked.registered_name, "candidate")
    assert str(version.version) == tracked.version == "1" and version.run_id == tracked.run_id
    assert version.tags["max_phases"] == "2"
    loaded = tracking.load_registered(tracked.registered_name)
    x = torch.from_numpy(result.input_example)
    x = torch.cat([x, x.flip(0), x[:1]])  # another batch size than the example's
    expected = result.model.cpu().eval().predict(x)
    with torch.no_grad():
        got = loaded(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{tracked.registered_name}@candidate")
    np.testing.assert_allclose(pyfunc.predict(x.numpy()), expected.numpy(), atol=1e-6)


def test_classifier_run_logs_variants_confusion_and_loads_back(tiny_store, mlflow_uri):
    result, tracked = train_task(
        "lattice-system",
        "tiny",
        TINY_SUBSET,
        "tiny",
        TINY_CLASSIFIER_PRESET,
        tiny_store,
        seed=0,
        progress=False,
    )
    client = MlflowClient()
    run = client.get_run(tracked.run_id)
    assert run.data.params["data.protocol"] == "strain"
    assert run.data.params["model.paper.position_channel"] == "False"
    assert run.data.params["model.position_channel.position_channel"] == "True"
    for name in ("train_loss", "val_accuracy", "paper/train_loss", "paper/val_accuracy"):
        assert len(client.get_metric_history(tracked.run_id, name)) == 4, name
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.primary.accuracy)
    assert run.data.metrics["rf_test_accuracy"] == pytest.approx(result.rf_accuracy)
    assert {
        "learning_curves.png",
        "confusion_matrix.png",
        "confusion_matrix_paper.png",
        "config.yaml",
    } <= _artifacts(client, tracked.run_id)
    assert tracked.registered_name == "xrdpipe-lattice-system-tiny"
    loaded = tracking.load_registered(tracked.registered_name)
    x = torch.from_numpy(result.input_example)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x), result.model.cpu().eval().predict(x), rtol=0, atol=1e-6
        )
    # a second run of the same task adds version 2 and moves the candidate alias to it
    _, again = train_task(
        "lattice-system",
        "tiny",
        TINY_SUBSET,
        "tiny",
        TINY_CLASSIFIER_PRESET.model_copy(update={"epochs": 1, "variants": ("paper",)}),
        tiny_store,
        seed=1,
        progress=False,
    )
    assert again.version == "2"
    alias = client.get_model_version_by_alias(tracked.registered_name, "candidate")
    assert str(alias.version) == "2"


def test_logged_requirements_pin_this_torch(tiny_store, mlflow_uri, tmp_path):
    from xrdpipe.models import ACNN, ACNNConfig

    model = ACNN(ACNNConfig(n_points=200, n_classes=3))
    with mlflow.start_run():
        tracked = tracking.log_model(model, np.random.rand(2, 200).astype(np.float32), None)
    folder = mlflow.artifacts.download_artifacts(tracked.model_uri, dst_path=str(tmp_path))
    requirements = open(f"{folder}/requirements.txt").read().splitlines()
    assert f"torch=={torch.__version__}" in requirements
    assert tracked.version is None and tracked.alias is None
