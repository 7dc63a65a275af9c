"""The pipeline of ``xrdpipe run`` and the ``pipeline`` flow: one sequence, one set of skip rules.

A small offline ``demo`` (the package's CIFs, 5 materials, a few strains, ``tiny`` presets) runs
the real stages in this process; the second run finds everything current and runs no stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.support import small_demo_catalog
from xrdpipe.config import Settings
from xrdpipe.errors import ConfigError
from xrdpipe.stages.pipeline import DEFAULTS, PipelineOptions, Steps, local_steps, run_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


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
    catalog = small_demo_catalog(tmp_path / "catalog.yaml", 5, 6, 2, epochs=1)
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
