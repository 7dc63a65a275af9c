"""The training tasks of both papers on a tiny real store, and the train flow under Prefect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.support import (
    TINY_CLASSIFIER_PRESET,
    TINY_IDS,
    TINY_PHASE_PRESET,
    TINY_SUBSET,
    build_tiny_store,
)
from xrdpipe.config import (
    LATTICE_SYSTEMS,
    SimulationConfig,
    default_catalog_path,
)


def test_grid_material_order_is_seeded_and_independent_of_row_order():
    from xrdpipe.training.phase_fractions import grid_material_order

    frame = pd.DataFrame({"cod_id": ["9008488", "1000054", "2100862", "1009031"]})
    order = grid_material_order(frame, seed=3)
    assert order == grid_material_order(frame.iloc[::-1], seed=3)
    assert sorted(order) == sorted(frame["cod_id"])
    expected = np.random.default_rng(3).permutation(4)
    assert order == [["1000054", "1009031", "2100862", "9008488"][i] for i in expected]


def test_phase_fractions_train_and_report_a_fixed_test_set(tiny_store):
    from xrdpipe.patterns import MixtureConfig
    from xrdpipe.patterns.datasets import fixed_mixture_set
    from xrdpipe.training.phase_fractions import (
        FIXED_SET_BATCH,
        TEST_SEED_OFFSET,
        completed_material_table,
        grid_material_order,
        train_phase_fractions,
    )

    records = []
    result = train_phase_fractions(
        tiny_store,
        TINY_SUBSET,
        TINY_PHASE_PRESET,
        n_materials=3,
        max_phases=2,
        seed=1,
        callbacks=[records.append],
        progress=False,
    )
    history = result.train.history
    assert len(history) == 4 and [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    expected = grid_material_order(completed_material_table(tiny_store), TINY_SUBSET.seed)[:3]
    assert result.materials == expected
    # the test set is the documented one: seeded by the subset, from the test strains,
    # drawn in batches of FIXED_SET_BATCH, and recorded by its spec beside the store
    cfg = MixtureConfig(n_materials=3, max_phases=2, batch_size=FIXED_SET_BATCH)
    again = fixed_mixture_set(
        tiny_store,
        "test",
        expected,
        cfg,
        TINY_SUBSET.profile,
        n=96,
        seed=TINY_SUBSET.seed + TEST_SEED_OFFSET,
    )
    assert result.test_set_sha256 == again.sha256 and result.test_set_key == again.key
    assert result.n_test == 96
    assert (tiny_store.parent / "fixed_sets" / f"{again.key}.json").is_file()
    assert result.predictions.shape == result.targets.shape == (96, 3)
    np.testing.assert_allclose(result.predictions.sum(axis=1), 1.0, rtol=1e-5)
    tvd = 0.5 * np.abs(result.predictions - result.targets).sum(axis=1)
    assert result.test_tvd_mean == pytest.approx(tvd.mean(), rel=1e-5)
    assert result.config["data"]["train_strains"] == 6  # 60 % of 10
    assert result.config["model"]["width"] == 0.1
    # the same seed after other draws from torch's global generator: the same network
    torch.manual_seed(12345)
    torch.rand(1000)
    same = train_phase_fractions(
        tiny_store,
        TINY_SUBSET,
        TINY_PHASE_PRESET,
        n_materials=3,
        max_phases=2,
        seed=1,
        progress=False,
    )
    np.testing.assert_array_equal(same.predictions, result.predictions)


def test_classifier_trains_both_variants_and_the_forest(tiny_store):
    from xrdpipe.training.classifier import train_classifier

    result = train_classifier(
        tiny_store,
        TINY_SUBSET,
        TINY_CLASSIFIER_PRESET,
        "lattice_system",
        "strain",
        seed=0,
        progress=False,
    )
    assert [v.variant for v in result.variants] == ["position_channel", "paper"]
    assert set(result.class_names) <= set(LATTICE_SYSTEMS) and len(result.class_names) == 6
    n_test = 7 * 4
    assert len(result.y_true) == n_test and sum(result.counts["test"].values()) == n_test
    assert sum(result.counts["train"].values()) == 7 * 8  # 80 % of 10 strains
    for variant in result.variants:
        history = variant.train.history
        assert history[-1]["train_loss"] < history[0]["train_loss"], variant.variant
        assert variant.confusion.sum() == n_test
        assert variant.accuracy == pytest.approx(np.trace(variant.confusion) / n_test)
    assert result.model.config.position_channel
    assert 0.0 <= result.rf_accuracy <= 1.0
    metrics = result.metrics()
    assert {"test_accuracy", "paper/test_accuracy", "rf_test_accuracy"} <= set(metrics)


def test_classifier_material_protocol_and_manifest_labels(tiny_store):
    from xrdpipe.training.classifier import train_classifier

    preset = TINY_CLASSIFIER_PRESET.model_copy(update={"variants": ("paper",), "epochs": 1})
    result = train_classifier(
        tiny_store, TINY_SUBSET, preset, "dimensionality", "material", seed=0, progress=False
    )
    assert result.class_names == ["2D", "3D"]
    assert result.counts["materials"] == {"2D": 2, "3D": 5}
    test_ids = set(result.config["data"]["test_materials"])
    assert len(test_ids) == 2  # one 2D (round(0.2 * 2) -> at least 1), one 3D
    assert len(result.y_true) == 2 * 4


def test_space_group_classes_need_enough_materials(tiny_store):
    from xrdpipe.training.classifier import TaskError, train_classifier

    preset = TINY_CLASSIFIER_PRESET.model_copy(update={"min_materials_per_class": 2})
    with pytest.raises(TaskError, match="space_group"):
        train_classifier(tiny_store, TINY_SUBSET, preset, "space_group", progress=False)


def test_classifier_refuses_an_unconstrained_strain_store(tmp_path_factory):
    from xrdpipe.training.classifier import TaskError, train_classifier

    subset = TINY_SUBSET.model_copy(
        update={
            "simulation": SimulationConfig(
                n_train_strains=2,
                n_test_strains=1,
                strain_mode="unconstrained",
                materials_per_chunk=2,
            )
        }
    )
    path = build_tiny_store(tmp_path_factory.mktemp("unconstrained"), subset, TINY_IDS[:2])
    path = path / "patterns.zarr"
    with pytest.raises(TaskError, match="unconstrained"):
        train_classifier(path, subset, TINY_CLASSIFIER_PRESET, "lattice_system")


def test_train_flow_creates_a_tracked_registered_run(
    prefect_harness, tiny_store, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from flows.train import train

    data = yaml.safe_load(default_catalog_path().read_text())
    data["subsets"]["tiny"] = json.loads(TINY_SUBSET.model_dump_json())
    data["presets"]["classifier"]["tiny"] = json.loads(
        TINY_CLASSIFIER_PRESET.model_copy(
            update={"variants": ("position_channel",)}
        ).model_dump_json()
    )
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XRDPIPE_MLFLOW_TRACKING_URI", uri)
    out = train(task="lattice-system", subset="tiny", preset="tiny", catalog=str(catalog))
    assert out["registered_model"] == "xrdpipe-lattice-system-tiny" and out["version"] == "1"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(out["run_id"])
    assert run.data.params["args.preset_name"] == "tiny"
    assert run.data.tags["xrdpipe.task"] == "lattice-system"
    assert len(client.get_metric_history(out["run_id"], "train_loss")) == 4
    version = client.get_model_version_by_alias("xrdpipe-lattice-system-tiny", "candidate")
    assert version.run_id == out["run_id"]
    assert (tmp_path / "mlartifacts").is_dir()  # artifacts beside the database, not ./mlruns


def test_catalog_presets_are_validated_and_named():
    from xrdpipe.config import load_catalog, parse_catalog
    from xrdpipe.errors import ConfigError

    catalog = load_catalog(default_catalog_path())
    assert catalog.preset("phase_fractions", "paper").model.width == 1.0
    assert catalog.preset("phase_fractions", "paper").train.batch_size == 512
    assert catalog.preset("phase_fractions", "cpu").train.max_minutes is not None
    assert catalog.preset("classifier", "paper").train.batch_size == 128
    data = yaml.safe_load(default_catalog_path().read_text())
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    data["presets"]["phase_fractions"]["cpu"]["widht"] = 0.3
    with pytest.raises(ConfigError, match=r"presets\.phase_fractions\.cpu\.widht"):
        parse_catalog(data)
    allowed = (
        "allowed: \\['cpu', 'cpu-binned', 'cpu-long', 'cv', 'paper', 'synthetic-cpu', "
        "'synthetic-gpu'\\]"
    )
    with pytest.raises(ConfigError, match=allowed):
        catalog.preset("classifier", "gpu")


def test_phase_fractions_train_through_the_whole_instrument_model(tiny_store):
    """A subset's profile with every instrument effect trains (March-Dollase included)."""
    import math

    from xrdpipe.patterns import config as pc
    from xrdpipe.training.phase_fractions import train_phase_fractions

    instrument = pc.InstrumentConfig(
        sample_displacement_mm=(-0.1, 0.1),
        widths=pc.TCHWidthConfig(),
        preferred_orientation=pc.MarchDollaseConfig(ratio=(0.8, 1.0)),
        chebyshev_background=pc.ChebyshevBackgroundConfig(),
        amorphous_hump=pc.AmorphousHumpConfig(),
        counting_noise=pc.CountingNoiseConfig(max_counts=(1e3, 1e4)),
    )
    profile = TINY_SUBSET.profile.model_copy(
        update={"ka_doublet": True, "zero_shift_deg": (-0.05, 0.05), "instrument": instrument}
    )
    subset = TINY_SUBSET.model_copy(update={"profile": profile})
    preset = TINY_PHASE_PRESET.model_copy(
        update={"epochs": 2, "fraction_mode": "weight", "phase_draw": "distinct"}
    )
    result = train_phase_fractions(
        tiny_store, subset, preset, n_materials=3, max_phases=2, seed=0, progress=False
    )
    assert [h["epoch"] for h in result.train.history] == [1, 2]
    assert all(math.isfinite(h["train_loss"]) for h in result.train.history)
    recorded = result.config["subset"]["profile"]["instrument"]
    assert recorded["preferred_orientation"]["ratio"] == [0.8, 1.0]
    assert result.config["mixtures"]["fraction_mode"] == "weight"
    np.testing.assert_allclose(result.predictions.sum(axis=1), 1.0, rtol=1e-5)
