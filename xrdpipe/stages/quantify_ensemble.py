"""Training ``xrdpipe quantify``'s ensemble: members on Dask workers, detection limits, MLflow.

1. Members: :func:`~xrdpipe.training.phase_fractions.train_phase_fractions` with seeds
   ``0 .. M-1`` on the same store, preset, N (every phase) and K, one member per Dask task
   on a LocalCluster of single-threaded workers (:func:`xrdpipe.parallel.dask_client`,
   ``min(M, settings.dask_workers or CPU cores)`` workers) or the configured scheduler. The
   seeds change the initial weights and the training stream; the split, the validation and
   the test mixtures are those of the subset's seed, the same for every member.
2. Each finished member is logged from this process (SQLite takes one writer) as a child
   run of the ensemble's parent run.
3. Detection limit per phase (:func:`detection_limits`): on the members' validation
   mixtures (the fixed set of :mod:`xrdpipe.training.phase_fractions`, redrawn here and
   checked against the members' recorded SHA-256), the ensemble-mean prediction of phase
   ``j`` on the mixtures where ``j`` is absent (true fraction 0) has a standard deviation
   ``s_j``; the detection limit is ``3 s_j`` (the usual 3-sigma of the blank). With fewer
   than :data:`MIN_BLANKS` such mixtures it is NaN and the 1 wt% floor applies alone.
4. The checkpoints and the description are registered as one model version
   (:mod:`xrdpipe.tracking.quantify_models`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrdpipe.config import PhaseFractionPreset, Settings, SubsetConfig
from xrdpipe.errors import XrdpipeError

Log = Callable[[str], None]

DETECTION_SIGMAS = 3.0
"""The detection limit is this many standard deviations of the blank (absent) predictions."""
MIN_BLANKS = 10
"""Fewest validation mixtures without a phase for its detection limit."""


@dataclass
class MemberResult:
    """What a member's training sends back from its worker (CPU tensors, plain values)."""

    seed: int
    state_dict: dict[str, Any]
    model_config: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    materials: list[str]
    formulas: list[str]
    validation_set_sha256: str
    wall_s: float


def train_member(
    store_path: Path,
    subset: SubsetConfig,
    preset: PhaseFractionPreset,
    n_materials: int,
    max_phases: int,
    seed: int,
) -> MemberResult:
    """One member, in this process (a Dask worker runs this with the synchronous scheduler).

    The store is read through xarray, whose lazy arrays would otherwise be computed on the
    cluster from inside the task (see :func:`xrdpipe.stages.evaluate.run_cell_in_worker`).
    """
    import dask

    from xrdpipe.training.phase_fractions import train_phase_fractions

    start = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        result = train_phase_fractions(
            store_path, subset, preset, n_materials, max_phases, seed=seed, progress=False
        )
    state = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}
    history = [
        {k: v for k, v in record.items() if isinstance(v, (int, float, str, dict))}
        for record in result.train.history
    ]
    return MemberResult(
        seed=seed,
        state_dict=state,
        model_config={k: v for k, v in result.config["model"].items() if k != "name"},
        config=result.config,
        history=history,
        metrics=result.metrics(),
        materials=result.materials,
        formulas=result.formulas,
        validation_set_sha256=result.validation_set_sha256,
        wall_s=time.perf_counter() - start,
    )


def train_members(
    settings: Settings,
    store_path: Path,
    subset: SubsetConfig,
    preset: PhaseFractionPreset,
    n_materials: int,
    max_phases: int,
    seeds: Sequence[int],
    on_member: Callable[[MemberResult], None],
    log: Log = print,
) -> float:
    """Train every seed on Dask workers in parallel; ``on_member`` here as each finishes.

    Returns:
        The wall time of the whole ensemble, seconds.
    """
    from distributed import as_completed

    from xrdpipe.parallel import dask_client

    start = time.perf_counter()
    workers = min(len(seeds), settings.dask_workers or _cores())
    with dask_client(settings, n_workers=workers) as client:
        futures = [
            client.submit(
                train_member,
                store_path,
                subset,
                preset,
                n_materials,
                max_phases,
                seed,
                key=f"quantify-member-s{seed}-{time.time_ns()}",
                pure=False,
            )
            for seed in seeds
        ]
        log(f"{len(futures)} member(s) submitted to {client.scheduler.address} ({workers} workers)")
        for done, future in enumerate(as_completed(futures, loop=client.loop), 1):
            member = future.result()
            log(f"member {done}/{len(futures)} (seed {member.seed}) in {member.wall_s:.0f} s")
            on_member(member)
    return time.perf_counter() - start


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def validation_mixtures(
    store_path: Path,
    subset: SubsetConfig,
    preset: PhaseFractionPreset,
    materials: list[str],
    max_phases: int,
) -> Any:
    """The members' fixed validation set, redrawn (:class:`FixedMixtureSet`).

    The same draw as :func:`~xrdpipe.training.phase_fractions.train_phase_fractions`: the
    validation part of the training strains (:func:`split_train_validation` with the
    subset's seed), mixtures of the preset's ``mixtures`` section drawn in batches of
    ``FIXED_SET_BATCH`` with seed ``subset.seed + VALIDATION_SEED_OFFSET``.
    """
    from xrdpipe.patterns.config import MixtureConfig
    from xrdpipe.patterns.datasets import fixed_mixture_set, load_peaks
    from xrdpipe.patterns.mixtures import split_train_validation
    from xrdpipe.training.phase_fractions import FIXED_SET_BATCH, VALIDATION_SEED_OFFSET

    n_strains = load_peaks(store_path, "train", materials).peaks.n_strains
    _, val_idx = split_train_validation(n_strains, preset.split.train_fraction, seed=subset.seed)
    cfg = MixtureConfig(
        n_materials=len(materials),
        max_phases=max_phases,
        batch_size=FIXED_SET_BATCH,
        **preset.mixtures.config_fields(),
    )
    return fixed_mixture_set(
        store_path,
        "train",
        materials,
        cfg,
        subset.profile,
        n=preset.split.n_validation,
        seed=subset.seed + VALIDATION_SEED_OFFSET,
        record_dir=None,
        strain_index=val_idx,
    )


def detection_limits(mean_predictions: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``3 x`` the std of each phase's ensemble-mean prediction where it is absent.

    Args:
        mean_predictions: ``(n, N)`` ensemble-mean weight fractions of validation mixtures.
        truth: ``(n, N)`` their true weight fractions.

    Returns:
        ``(N,)`` weight fractions (0-1); NaN where fewer than :data:`MIN_BLANKS` mixtures lack
        the phase.
    """
    limits = np.full(truth.shape[1], np.nan)
    for j in range(truth.shape[1]):
        blank = mean_predictions[truth[:, j] == 0, j]
        if blank.size >= MIN_BLANKS:
            limits[j] = DETECTION_SIGMAS * float(np.std(blank, ddof=1))
    return limits


def ensemble_mean(
    states: Sequence[dict[str, Any]], model_config: dict[str, Any], x: Any
) -> np.ndarray:
    """The members' mean predicted fractions of patterns ``x`` ``(n, n_points)``."""
    from xrdpipe.models import PhaseCNN, config_from_dict
    from xrdpipe.training.inference import predict_batched

    outputs = []
    for state in states:
        network = PhaseCNN(config_from_dict("phase_cnn", model_config))
        network.load_state_dict(state)
        network.eval()
        outputs.append(predict_batched(network.predict, x, 256).numpy())
    return np.mean(outputs, axis=0)


def train_ensemble(
    settings: Settings,
    phase_set: str,
    subset: SubsetConfig,
    preset_name: str,
    preset: PhaseFractionPreset,
    *,
    seeds: Sequence[int],
    max_phases: int,
    fingerprint: str,
    registered_name: str,
    folder: Path,
    log: Log = print,
) -> str:
    """Train, log, describe and register the ensemble (module docstring).

    Call :func:`xrdpipe.tracking.configure` first.

    Returns:
        The registered version; ``folder`` holds what was registered.
    """
    from xrdpipe.stages.quantify_model import MODEL_FILE, save_ensemble
    from xrdpipe.tracking import quantify_models as registry
    from xrdpipe.training.phase_fractions import completed_material_table

    store_path = settings.store_path(phase_set)
    n_materials = len(completed_material_table(store_path))
    k = min(max_phases, n_materials)
    params = {
        "args": {
            "phase_set": phase_set,
            "preset_name": preset_name,
            "n_materials": n_materials,
            "max_phases": k,
            "seeds": list(seeds),
            "fingerprint": fingerprint,
        },
        "preset": preset.model_dump(mode="json"),
    }
    members: list[MemberResult] = []
    tags = {"xrdpipe.subset": phase_set, "xrdpipe.preset": preset_name}
    with registry.ensemble_run(f"{phase_set}-{preset_name}-M{len(seeds)}", params, tags) as run:

        def on_member(member: MemberResult) -> None:
            members.append(member)
            registry.log_member(
                run, f"{phase_set}-{preset_name}-s{member.seed}", member.config,
                member.history, member.metrics,
            )  # fmt: skip

        wall = train_members(
            settings, store_path, subset, preset, n_materials, k, seeds, on_member, log
        )
        members.sort(key=lambda m: m.seed)
        first = members[0]
        validation = validation_mixtures(store_path, subset, preset, first.materials, k)
        recorded = {m.validation_set_sha256 for m in members}
        if recorded != {validation.sha256}:
            raise XrdpipeError(
                f"the redrawn validation set {validation.sha256[:12]} is not the members' "
                f"{sorted(s[:12] for s in recorded)}"
            )
        mean = ensemble_mean(
            [m.state_dict for m in members], first.model_config, validation.patterns
        )
        limits = detection_limits(mean, validation.phase_fractions.numpy())
        names = first.config["data"].get("names") or first.materials
        description = {
            "phase_set": phase_set,
            "fingerprint": fingerprint,
            "seeds": [m.seed for m in members],
            "materials": first.materials,
            "formulas": first.formulas,
            "names": names,
            "detection_limits": dict(zip(names, limits.tolist(), strict=True)),
            "detection_rule": (
                f"{DETECTION_SIGMAS:g} x std of the ensemble-mean prediction on the "
                f"{validation.phase_fractions.shape[0]} validation mixtures, over those "
                "where the phase is absent"
            ),
            "model_config": first.model_config,
            "config": first.config,
            "ensemble_wall_s": wall,
            "member_metrics": {str(m.seed): m.metrics for m in members},
        }
        save_ensemble(folder, [(m.seed, m.state_dict) for m in members], description)
        metrics = {
            "ensemble_wall_s": wall,
            **{f"detection_limit_{i}": float(v) for i, v in enumerate(limits) if np.isfinite(v)},
        }
        registry.log_metrics(metrics)
        version = registry.register_ensemble(
            run,
            folder,
            registered_name,
            {
                registry.FINGERPRINT_TAG: fingerprint,
                "task": "quantify",
                "preset": preset_name,
                "members": str(len(members)),
                "materials": ",".join(first.materials),
            },
            description=(
                f"xrdpipe quantify ensemble of phase set {phase_set}: {MODEL_FILE} and one "
                "member-s<seed>.pt state_dict per member (torch.load(weights_only=True))."
            ),
        )
    log(f"model: registered {registered_name} version {version} ({wall:.0f} s of training)")
    return version
