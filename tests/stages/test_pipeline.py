"""The pipeline of ``xrdpipe run`` and the ``pipeline`` flow: one sequence, one set of skip rules.

A small offline ``demo`` (the package's CIFs, 5 materials, a few strains, ``tiny`` presets) runs
the real stages in this process; the second run finds everything current and runs no stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from xrdpipe.config import Settings, default_catalog_path
from xrdpipe.errors import ConfigError
from xrdpipe.stages.pipeline import DEFAULTS, PipelineOptions, Steps, local_steps, run_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def small_demo_catalog(path: Path) -> Path:
    """The packaged catalog with ``demo`` cut to 5 materials and ``tiny`` presets."""
    data = yaml.safe_load(default_catalog_path().read_text())
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    demo = data["subsets"]["demo"]
    demo["sample_size"] = 5
    demo["simulation"] |= {"n_train_strains": 6, "n_test_strains": 2, "materials_per_chunk": 4}
    demo["profile"] = {"n_points": 1501}
    data["presets"]["phase_fractions"]["tiny"] = {
        "width": 0.1,
        "batch_size": 32,
        "lr": 2e-3,
        "epochs": 1,
        "epoch_size": 64,
        "n_validation": 32,
        "n_test": 32,
        "device": "cpu",
    }
    data["presets"]["classifier"]["tiny"] = {
        "variants": ["paper"],
        "batch_size": 16,
        "epochs": 1,
        "early_stopping_patience": None,
        "augment": False,
        "rf_trees": 5,
        "device": "cpu",
    }
    path.write_text(yaml.safe_dump(data))
    return path


def recording(steps: Steps, calls: list[tuple[str, dict[str, Any]]]) -> Steps:
    """The same steps, each call recorded as ``(step, keyword arguments)``."""

    def wrap(name: str):
        def call(**kwargs: Any) -> dict[str, Any]:
            calls.append((name, kwargs))
            return getattr(steps, name)(**kwargs)

        return call

    return Steps(*(wrap(name) for name in ("fetch", "simulate", "train", "evaluate")))


def test_defaults_are_written_once():
    from flows.pipeline import pipeline

    parameters = pipeline.parameters.properties
    assert parameters["n_materials"]["default"] == DEFAULTS.n_materials == 5
    assert parameters["max_phases"]["default"] == DEFAULTS.max_phases == 3
    assert parameters["grid_baselines"]["default"] == ["ridge", "knn", "nnls_reference"]
    assert parameters["grid_baseline_train"]["default"] == DEFAULTS.grid_baseline_train == 5000
    forced = DEFAULTS.forced()
    assert (forced.refetch, forced.overwrite, forced.retrain) == (True, True, True)


def test_a_second_run_skips_every_stage_and_force_redoes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XRDPIPE_DASK_WORKERS", "1")
    catalog = small_demo_catalog(tmp_path / "catalog.yaml")
    settings = Settings(
        data_dir=tmp_path / "data", mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"
    )
    options = PipelineOptions(
        preset="tiny",
        n_materials=3,
        max_phases=2,
        grid_n_values=(3,),
        grid_k_values=(2,),
        grid_baselines=("ridge",),
        grid_baseline_train=64,
        catalog=str(catalog),
    )
    calls: list[tuple[str, dict[str, Any]]] = []
    lines: list[str] = []
    steps = recording(local_steps(settings, lines.append), calls)

    first = run_pipeline(options, settings, steps, lines.append)
    assert [name for name, _ in calls] == ["fetch", "simulate", "train", "train", "evaluate"]
    assert [kw.get("task") for _, kw in calls[2:4]] == ["phase-fractions", "lattice-system"]
    assert calls[2][1] | {"catalog": None} == {
        "task": "phase-fractions",
        "subset": "demo",
        "preset": "tiny",
        "catalog": None,
        "seed": 0,
        "n_materials": 3,
        "max_phases": 2,
    }
    assert first["fetch"]["sampled"] == 5 and first["simulate"]["simulated"] == 5
    assert first["train"]["phase-fractions"]["version"] == "1"
    assert Path(first["evaluate"]["report"]).is_file()

    calls.clear()
    lines.clear()
    second = run_pipeline(options, settings, steps, lines.append)
    assert calls == []
    text = "\n".join(lines)
    assert "fetch: skipped" in text and "simulate: skipped" in text
    assert text.count("not retraining") == 2 and "the last report stands" in text
    assert second["train"]["lattice-system"]["version"] == "1"
    assert second["evaluate"]["report"] == first["evaluate"]["report"]

    calls.clear()
    forced = replace(options, tasks=("phase-fractions",), evaluate_grid=False).forced()
    again = run_pipeline(forced, settings, steps, lines.append)
    assert [name for name, _ in calls] == ["fetch", "simulate", "train"]
    assert calls[1][1]["overwrite"] is True
    assert again["train"]["phase-fractions"]["version"] == "3"  # 2: the grid's cell


def test_a_bad_preset_fails_before_any_work(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    calls: list[tuple[str, dict[str, Any]]] = []
    steps = recording(local_steps(settings), calls)
    with pytest.raises(ConfigError, match="preset 'gpu'"):
        run_pipeline(PipelineOptions(preset="gpu"), settings, steps)
    assert calls == [] and not (tmp_path / "data").exists()
