"""Evaluation runs: the N/K grid's parent run and its child cell runs, and the report.

A grid opens one parent run (:func:`start_grid_run`), logs each finished cell as a child run
with its registered model and promotion (:func:`log_grid_cell`), and ends with the table,
plots and report (:func:`finish_grid_run`); :func:`download_latest_report` fetches the
newest report back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from xrdpipe.errors import XrdpipeError
from xrdpipe.tracking.registry import promote_if_better
from xrdpipe.tracking.runs import (
    _experiment_id,
    _metric_value,
    experiment_name,
    flatten,
    git_commit,
    log_phase_fractions,
    registered_model_name,
)

GRID_EXPERIMENT = "nk-grid"
CLASSIFICATION_EXPERIMENT = "classification-cv"


def start_grid_run(
    subset: str,
    preset_name: str,
    spec: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    *,
    experiment: str = GRID_EXPERIMENT,
) -> str:
    """Open (and leave open for :func:`log_grid_cell`) the parent run of a grid; its id.

    ``experiment`` (``nk-grid`` by default; ``classification-cv`` for paper 000's tables
    alone) names the experiment and the ``xrdpipe.task`` tag.
    """
    experiment_id = _experiment_id(experiment_name(experiment))
    tags = {
        "xrdpipe.task": experiment,
        "xrdpipe.subset": subset,
        "xrdpipe.preset": preset_name,
    }
    commit = git_commit()
    if commit:
        tags["xrdpipe.git_commit"] = commit
    client = MlflowClient()
    suffix = "grid" if experiment == GRID_EXPERIMENT else experiment
    run = client.create_run(experiment_id, run_name=f"{subset}-{preset_name}-{suffix}", tags=tags)
    params = flatten(
        {"subset": subset, "preset_name": preset_name, "grid": dict(spec), **(extra or {})}
    )
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def log_grid_cell(
    parent_run_id: str,
    cell: Any,
    subset: str,
    preset_name: str,
    *,
    register: bool = True,
    promote: bool = True,
) -> dict[str, Any]:
    """Log one finished grid cell as a child run of the grid (from the parent process).

    The child run holds the cell's full config, its per-epoch history (replayed with the
    epoch as step), the CNN's and every baseline's test metrics, the learning curve and
    fraction scatter plots, the model (registered as ``...-N<n>-K<k>``, alias ``candidate``)
    and the promotion outcome. The parent gets ``<method>_tvd_N<n>_K<k>_s<seed>`` metrics.

    Returns:
        ``{"run_id", "registered_name", "version", "promotion"}``.
    """
    result = cell.phase
    experiment_id = MlflowClient().get_run(parent_run_id).info.experiment_id
    label = f"N{cell.n_materials}-K{cell.max_phases}-s{cell.seed}"
    name = (
        registered_model_name("phase-fractions", subset, cell.n_materials, None, cell.max_phases)
        if register
        else None
    )
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=label,
        nested=False,
        tags={
            "mlflow.parentRunId": parent_run_id,
            "xrdpipe.task": "phase-fractions",
            "xrdpipe.grid_cell": label,
            "xrdpipe.subset": subset,
            "xrdpipe.preset": preset_name,
        },
    ):
        for record in result.train.history:
            step = int(record.get("epoch", 0))
            values = {
                k: v
                for k, v in ((k, _metric_value(v)) for k, v in record.items())
                if v is not None and k != "epoch"
            }
            mlflow.log_metrics(values, step=step)
        for b in cell.baselines:
            mlflow.log_metrics({f"baseline.{b.name}.{k}": v for k, v in b.metrics().items()})
            mlflow.log_params({f"baseline.{b.name}.{k}": str(v)[:500] for k, v in b.params.items()})
        tracked = log_phase_fractions(result, name)
        promotion = None
        if register and promote and tracked.version is not None:
            promotion = promote_if_better(name, tracked.version)
        run_id = tracked.run_id
    client = MlflowClient()
    suffix = f"N{cell.n_materials}_K{cell.max_phases}_s{cell.seed}"
    client.log_metric(parent_run_id, f"cnn_tvd_{suffix}", result.test_tvd_mean)
    for b in cell.baselines:
        client.log_metric(parent_run_id, f"{b.name}_tvd_{suffix}", b.tvd_mean)
    return {
        "run_id": run_id,
        "registered_name": name,
        "version": tracked.version,
        "promotion": None if promotion is None else promotion.as_dict(),
    }


def finish_grid_run(
    parent_run_id: str,
    artifacts: Sequence[str | Path],
    metrics: Mapping[str, float] | None = None,
    status: str = "FINISHED",
) -> None:
    """Log the grid's table, plots and report to the parent run and end it."""
    client = MlflowClient()
    for path in artifacts:
        client.log_artifact(parent_run_id, str(path))
    for key, value in (metrics or {}).items():
        client.log_metric(parent_run_id, key, float(value))
    client.set_terminated(parent_run_id, status=status)


def download_latest_report(destination: str | Path, experiment: str = GRID_EXPERIMENT) -> Path:
    """Fetch ``report.html`` of the newest finished evaluation run into ``destination``.

    Raises:
        XrdpipeError: no evaluation run with a report in the tracking store.
    """
    found = mlflow.get_experiment_by_name(experiment_name(experiment))
    if found is not None:
        runs = MlflowClient().search_runs(
            [found.experiment_id],
            filter_string="tags.xrdpipe.task = 'nk-grid' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for run in runs:
            names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
            if "report.html" in names:
                Path(destination).mkdir(parents=True, exist_ok=True)
                local = mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path="report.html", dst_path=str(destination)
                )
                return Path(local)
    raise XrdpipeError(
        f"no finished evaluation run with a report in {mlflow.get_tracking_uri()}; "
        "run `xrdpipe evaluate` first"
    )
