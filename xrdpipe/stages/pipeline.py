"""The pipeline: fetch, simulate, train and evaluate one subset, skipping what is current.

:func:`run_pipeline` is the one sequence of stages that ``xrdpipe run`` and the Prefect flow
``pipeline`` both call: the same stages in the same order, the same skip rules
(:mod:`xrdpipe.stages.refresh`) and the same defaults (:class:`PipelineOptions`). How each
stage is executed is the caller's :class:`Steps`: :func:`local_steps` calls the stage
functions in this process (the CLI, no Prefect server), the flow passes its subflows.

Skip rules, in order (``force`` in the CLI sets ``refetch``, ``overwrite`` and ``retrain``):

1. fetch is skipped when :func:`~xrdpipe.stages.refresh.fetch_is_current` (a ``package``
   subset whose settings, package version and manifest are unchanged);
2. simulate replaces a stale store (another manifest or simulation settings) and is
   skipped when :func:`~xrdpipe.stages.refresh.simulation_is_current`;
3. each task is trained again only when its
   :func:`~xrdpipe.stages.refresh.training_identity` changed since the model this pipeline
   last registered;
4. the N/K grid is evaluated again only when a model was trained or no report exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xrdpipe.config import Settings, load_catalog, resolve_subset

Log = Callable[[str], None]
StageProgress = Callable[[str, int, int], None]
"""Called as ``progress(what, done, total)``: ``CIFs``, ``structures``, ``blocks``,
``profiles``."""

DEFAULT_TASKS = ("phase-fractions", "lattice-system")
"""The two models of the papers; ``lattice-system`` only on a store with symmetry strain."""
GRID_BASELINES = ("ridge", "knn", "nnls_reference")
"""The baselines of the pipeline's small N/K grid (the fast ones)."""


@dataclass(frozen=True)
class PipelineOptions:
    """What a pipeline run does; the defaults are those of ``xrdpipe run`` and the flow.

    Attributes:
        subset: a subset of the catalog.
        preset: training preset of both models (and of the grid).
        tasks: models to train (default both).
        n_materials: N of the phase-fraction model.
        max_phases: K of the phase-fraction model.
        seed: training seed.
        refetch: fetch even when the manifest is current.
        overwrite: simulate the whole store again even when it is current.
        retrain: train (and evaluate) even when nothing changed.
        evaluate_grid: finish with a small N/K grid and its report.
        grid_n_values: N values of that grid.
        grid_k_values: K values of that grid.
        grid_baselines: baselines beside the CNN.
        grid_baseline_train: training mixtures of the regression baselines.
        mirror_dir: read this local COD mirror instead of the subset's source.
        cod_url: query this COD base URL instead of the settings' one.
        catalog: path of another catalog file.
    """

    subset: str = "demo"
    preset: str = "cpu"
    tasks: tuple[str, ...] = DEFAULT_TASKS
    n_materials: int = 5
    max_phases: int = 3
    seed: int = 0
    refetch: bool = False
    overwrite: bool = False
    retrain: bool = False
    evaluate_grid: bool = True
    grid_n_values: tuple[int, ...] = (5,)
    grid_k_values: tuple[int, ...] = (3,)
    grid_baselines: tuple[str, ...] = GRID_BASELINES
    grid_baseline_train: int = 5000
    mirror_dir: str | None = None
    cod_url: str | None = None
    catalog: str | None = None

    def forced(self) -> PipelineOptions:
        """The same run with every stage redone (``xrdpipe run --force``)."""
        return replace(self, refetch=True, overwrite=True, retrain=True)


DEFAULTS = PipelineOptions()
"""The pipeline's defaults, written once: the flow's parameters and the CLI read them."""


@dataclass(frozen=True)
class Steps:
    """How each stage runs; each takes the pipeline flow's keyword arguments, returns a dict.

    Attributes:
        fetch: ``fetch(subset=, mirror_dir=, cod_url=, catalog=)`` -> the manifest's counts.
        simulate: ``simulate(subset=, overwrite=, mirror_dir=, cod_url=, catalog=)`` -> the
            store's counts.
        train: ``train(task=, subset=, preset=, catalog=, seed=, n_materials=, max_phases=)``
            (``protocol=`` instead of N and K for a classifier) -> ``{"run_id",
            "registered_model", "version", "metrics", ...}``.
        evaluate: ``evaluate(subset=, preset=, n_values=, k_values=, seeds=, baselines=,
            n_baseline_train=, catalog=)`` -> ``{"parent_run_id", "report", ...}``.
    """

    fetch: Callable[..., dict[str, Any]]
    simulate: Callable[..., dict[str, Any]]
    train: Callable[..., dict[str, Any]]
    evaluate: Callable[..., dict[str, Any]]


def local_steps(settings: Settings, log: Log = print, progress: StageProgress | None = None):
    """The stages called in this process: no Prefect, what ``xrdpipe run`` executes.

    Args:
        settings: site settings (data directory, tracking URI, Dask).
        log: each stage's summary.
        progress: progress of the long loops (see :data:`StageProgress`).
    """
    from xrdpipe.stages.evaluate import (
        describe_evaluation,
        evaluate_subset,
        evaluation_record,
        grid_spec,
    )
    from xrdpipe.stages.fetch import fetch_subset
    from xrdpipe.stages.simulate import simulate_subset
    from xrdpipe.stages.train import describe_training, train_subset, training_record

    def resolved(subset: str, catalog: str | None, mirror_dir=None, cod_url=None):
        cat = load_catalog(catalog, settings)
        return resolve_subset(cat, subset, settings, mirror_dir=mirror_dir, cod_url=cod_url)

    def fetch(*, subset, mirror_dir=None, cod_url=None, catalog=None) -> dict[str, Any]:
        config = resolved(subset, catalog, mirror_dir, cod_url)
        report = fetch_subset(subset, config, settings, progress)
        log(report.summary())
        return report.as_dict()

    def simulate(*, subset, overwrite=False, mirror_dir=None, cod_url=None, catalog=None):
        done = simulate_subset(
            settings,
            subset,
            resolved(subset, catalog, mirror_dir, cod_url),
            overwrite=overwrite,
            on_block=None if progress is None else lambda _, d, t: progress("blocks", d, t),
            on_profiles=None if progress is None else lambda d, t: progress("profiles", d, t),
        )
        log(done.summary())
        return done.as_dict()

    def train(*, task, subset, preset, catalog=None, seed=0, **arguments) -> dict[str, Any]:
        log(f"training {task} on {subset} with preset {preset}")
        result, tracked = train_subset(
            settings, task, subset, preset, catalog=catalog, seed=seed, **arguments
        )
        log(describe_training(task, subset, preset, result, tracked, settings.tracking_uri()))
        return training_record(result, tracked)

    def evaluate(
        *, subset, preset, n_values, k_values, seeds, baselines, n_baseline_train, catalog=None
    ) -> dict[str, Any]:
        spec = grid_spec(n_values, k_values, seeds, baselines, n_baseline_train)
        outcome = evaluate_subset(settings, subset, preset, spec, catalog=catalog, log=log)
        log(describe_evaluation(outcome))
        return evaluation_record(outcome)

    return Steps(fetch=fetch, simulate=simulate, train=train, evaluate=evaluate)


def run_pipeline(
    options: PipelineOptions, settings: Settings, steps: Steps, log: Log = print
) -> dict[str, Any]:
    """Fetch, simulate, train and evaluate one subset; skip what is current (and say why).

    Args:
        options: what to run (:data:`DEFAULTS` unless told otherwise).
        settings: site settings (data directory, tracking URI).
        steps: how each stage runs (:func:`local_steps`, or the flow's subflows).
        log: a line per decision (run or skipped, and why).

    Returns:
        ``{"fetch", "simulate", "train", "evaluate"}``: each step's dict; a skipped step's
        has ``"skipped"`` with the reason (a skipped model keeps its recorded version).

    Raises:
        ConfigError: an unknown subset, task or preset, before any work.
    """
    from xrdpipe.stages import refresh
    from xrdpipe.stages.train import preset_kind

    o = options
    sources = {"mirror_dir": o.mirror_dir, "cod_url": o.cod_url, "catalog": o.catalog}
    catalog = load_catalog(o.catalog, settings)
    config = resolve_subset(catalog, o.subset, settings, mirror_dir=o.mirror_dir, cod_url=o.cod_url)
    presets = {task: catalog.preset(preset_kind(task), o.preset) for task in o.tasks}
    record = refresh.PipelineRecord(settings.subset_dir(o.subset) / refresh.RECORD_FILE)

    why = (
        None
        if o.refetch
        else refresh.fetch_is_current(settings, o.subset, config, record.get("fetch"))
    )
    if why:
        log(f"fetch: skipped, {why}")
        fetched: dict[str, Any] = {"subset": o.subset, "skipped": why}
    else:
        fetched = steps.fetch(subset=o.subset, **sources)
        record.set("fetch", refresh.fetch_record(settings, o.subset, config))

    overwrite = o.overwrite
    if not overwrite and refresh.store_is_stale(settings, o.subset, config):
        log(f"the manifest or the simulation settings changed: simulating {o.subset!r} again")
        overwrite = True
    why = None if overwrite else refresh.simulation_is_current(settings, o.subset, config)
    if why:
        log(f"simulate: skipped, {why}")
        simulated = {"store": str(settings.store_path(o.subset)), "skipped": why}
    else:
        simulated = steps.simulate(subset=o.subset, overwrite=overwrite, **sources)

    trained: dict[str, Any] = {}
    for task, preset in presets.items():
        if task == "lattice-system" and config.simulation.strain_mode != "symmetry":
            trained[task] = {"skipped": f"{o.subset} uses {config.simulation.strain_mode} strain"}
            log(f"no lattice-system classifier: {trained[task]['skipped']}")
            continue
        arguments: dict[str, Any] = {"seed": o.seed}
        if task == "phase-fractions":
            arguments |= {"n_materials": o.n_materials, "max_phases": o.max_phases}
        else:
            arguments["protocol"] = "strain"
        identity = refresh.training_identity(
            settings,
            o.subset,
            config,
            task,
            preset.model_dump(mode="json"),
            {"preset_name": o.preset, **arguments},
        )
        key = refresh.identity_key(identity)
        previous = record.get(task)
        if not o.retrain and previous and previous.get("identity_key") == key:
            log(
                f"train {task}: skipped, store and configuration unchanged since "
                f"{previous.get('registered_model')} version {previous.get('version')}: "
                "not retraining"
            )
            trained[task] = {**previous, "skipped": "unchanged"}
            continue
        out = steps.train(
            task=task, subset=o.subset, preset=o.preset, catalog=o.catalog, **arguments
        )
        trained[task] = {"identity_key": key} | {
            k: out[k] for k in ("registered_model", "version", "run_id", "metrics")
        }
        record.set(task, {k: v for k, v in trained[task].items() if k != "metrics"})

    evaluated: dict[str, Any] = {}
    if o.evaluate_grid:
        retrained = any("skipped" not in v for v in trained.values())
        previous = record.get("evaluation")
        if not retrained and not o.retrain and previous and Path(previous["report"]).is_file():
            report = previous["report"]
            log(f"evaluate: skipped, nothing retrained: the last report stands, {report}")
            evaluated = {**previous, "skipped": "unchanged"}
        else:
            out = steps.evaluate(
                subset=o.subset,
                preset=o.preset,
                n_values=list(o.grid_n_values),
                k_values=list(o.grid_k_values),
                seeds=[o.seed],
                baselines=list(o.grid_baselines),
                n_baseline_train=o.grid_baseline_train,
                catalog=o.catalog,
            )
            evaluated = {"parent_run_id": out["parent_run_id"], "report": out["report"]}
            record.set("evaluation", evaluated)

    models = {t: (v.get("registered_model"), v.get("version")) for t, v in trained.items()}
    log(
        f"done: store {simulated['store']}; MLflow {settings.tracking_uri()}; models {models}; "
        f"report {evaluated.get('report')}"
    )
    return {"fetch": fetched, "simulate": simulated, "train": trained, "evaluate": evaluated}
