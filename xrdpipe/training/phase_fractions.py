"""Paper 002's phase-fraction CNN trained on a store: mixtures of N materials, up to K phases.

:func:`train_phase_fractions`: the first ``N`` materials of :func:`grid_material_order`,
mixtures of up to ``K`` phases drawn on the fly from the 60 % training part of the training
strains, a fixed validation set from the other 40 %, and a fixed test set from the held-out
test strains (:func:`~xrdpipe.patterns.mixtures.make_fixed_mixture_set` via
:func:`~xrdpipe.patterns.datasets.fixed_mixture_set`, its spec and SHA-256 recorded and
reported). Loss and metric: total variation distance. Nothing here imports MLflow or Prefect:
the task returns a :class:`PhaseFractionResult` and hands every epoch's record to the caller's
callbacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from xrdpipe import store
from xrdpipe.config import PhaseFractionPreset, SubsetConfig
from xrdpipe.models import PhaseCNN, PhaseCNNConfig, config_to_dict
from xrdpipe.patterns.config import MixtureConfig
from xrdpipe.patterns.datasets import fixed_mixture_set, load_peaks, material_table
from xrdpipe.patterns.mixtures import MixtureSampler, split_train_validation
from xrdpipe.structures.phase_files import material_sort_key
from xrdpipe.training.config import loop_config
from xrdpipe.training.devices import seed_everything
from xrdpipe.training.inference import predict_batched
from xrdpipe.training.labels import TaskError
from xrdpipe.training.loop import Callback, TrainResult, pick_device, train
from xrdpipe.training.losses import TVDLoss, total_variation_distance
from xrdpipe.training.seeds import seed_for

VALIDATION_SEED_OFFSET = 7_919
"""The fixed validation mixtures are drawn with ``subset.seed + 7919``."""
TEST_SEED_OFFSET = 104_729
"""The fixed test mixtures are drawn with ``subset.seed + 104729``: one test set per subset,
N, K and size, whatever the training seed (the hash is reproducible per device type)."""
FIXED_SET_BATCH = 512
"""Fixed validation and test sets are drawn in batches of 512 whatever the training batch, so
presets with other batch sizes share them (the draw depends on the batch size)."""
MAX_PLOT_PREDICTIONS = 2000
"""Test predictions kept in a result for plots."""
PREDICT_BATCH = 256
"""Test mixtures per inference batch."""


def completed_material_table(store_path: store.StorePath) -> pd.DataFrame:
    """One row per completed, non-quarantined material of a store (store order)."""
    return material_table(store.load_completed(store_path))


def grid_material_order(materials: pd.DataFrame, seed: int) -> list[str]:
    """The documented order in which materials enter the N of a phase-fraction model.

    Rule: the ids of ``materials`` sorted by
    :func:`~xrdpipe.structures.phase_files.material_sort_key` (COD ids as integers, then a
    phase set's ids; so the order does not depend on the manifest's row order), then
    permuted by ``numpy.random.default_rng(seed)``. The first ``N`` ids are the material
    set of an ``N``-material model; a larger ``N`` extends a smaller one (nested sets), and
    the evaluation grid reuses the same rule.

    Args:
        materials: a frame with a ``cod_id`` column (e.g. :func:`completed_material_table`).
        seed: the subset's seed.

    Returns:
        COD ids in grid order.
    """
    ids = sorted((str(i) for i in materials["cod_id"]), key=material_sort_key)
    order = np.random.default_rng(seed).permutation(len(ids))
    return [ids[i] for i in order]


@dataclass
class PhaseFractionResult:
    """What :func:`train_phase_fractions` returns.

    Attributes:
        model: the trained network (best validation weights), on the training device.
        train: the loop's result (history, best epoch, stop reason, wall time).
        config: the full resolved configuration (subset, preset, model, mixtures, training).
        materials: COD ids of the N outputs, in output order.
        formulas: their formulas.
        test_tvd_mean: mean TVD on the fixed test set.
        test_tvd_std: its standard deviation over test mixtures.
        test_mae: mean absolute error of the fractions.
        test_set_sha256: SHA-256 of the test patterns and fractions.
        test_set_key: hash of the test set's spec (its record under ``record_dir``).
        validation_set_sha256: same for the validation set.
        n_test: test mixtures.
        predictions: ``(<= 2000, N)`` predicted fractions of the first test mixtures.
        targets: their true fractions.
        input_example: two test patterns ``(2, n_points)`` float32.
        store: store path, fingerprint, manifest hash, strain mode.
        wall_s: wall time of the whole task.
    """

    model: PhaseCNN
    train: TrainResult
    config: dict[str, Any]
    materials: list[str]
    formulas: list[str]
    test_tvd_mean: float
    test_tvd_std: float
    test_mae: float
    test_set_sha256: str
    test_set_key: str
    validation_set_sha256: str
    n_test: int
    predictions: np.ndarray
    targets: np.ndarray
    input_example: np.ndarray
    store: dict[str, Any]
    wall_s: float
    test_patterns: Tensor | None = field(default=None, repr=False)
    test_fractions: Tensor | None = field(default=None, repr=False)
    train_strain_index: np.ndarray | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, float]:
        """Summary metrics (test, best validation, time)."""
        return {
            "test_tvd_mean": self.test_tvd_mean,
            "test_tvd_std": self.test_tvd_std,
            "test_mae": self.test_mae,
            "best_val_tvd": self.train.best_val_loss,
            "best_epoch": float(self.train.best_epoch),
            "train_wall_s": self.train.wall_s,
            "wall_s": self.wall_s,
        }


def train_phase_fractions(
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    preset: PhaseFractionPreset,
    n_materials: int,
    max_phases: int,
    seed: int = 0,
    materials: Sequence[str] | None = None,
    device: str | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    record_dir: str | Path | None = None,
    keep_test_set: bool = False,
) -> PhaseFractionResult:
    """Train paper 002's phase-fraction CNN on mixtures of ``N`` materials, up to ``K`` phases.

    Splits: the store's training strains are split 60/40 (``preset.split.train_fraction``) by
    :func:`~xrdpipe.patterns.mixtures.split_train_validation` with the subset's seed; training
    mixtures are drawn on the fly from the 60 % part (a fresh seeded sampler per epoch, so a
    resumed run is exact), ``preset.split.n_validation`` fixed mixtures from the 40 % part
    validate, and ``preset.split.n_test`` fixed mixtures from the held-out test strains test.
    The split, the validation and the test sets depend on the subset's seed only; ``seed``
    changes the initialisation and the training stream (paper 002: three seeds per (N, K)).

    Args:
        store_path: the subset's ``patterns.zarr``.
        subset_config: the subset (profile, seed).
        preset: the training preset (``cpu``, ``paper``, ...).
        n_materials: N, the outputs of the network.
        max_phases: K, most phases per mixture.
        seed: the training seed.
        materials: explicit COD ids (length N); default: the first N of
            :func:`grid_material_order` with the subset's seed.
        device: overrides ``preset.train.device``.
        callbacks: receive every epoch's record (e.g. the MLflow logger).
        progress: tqdm progress bar on stderr.
        checkpoint_dir: where the loop writes ``last``/``best`` checkpoints (``None``: none).
        record_dir: where the fixed sets' spec and hash records go
            (:func:`~xrdpipe.patterns.datasets.fixed_mixture_set`; default
            ``<subset dir>/fixed_sets`` beside a local store): a later draw of the same spec
            that no longer reproduces the hash is refused.
        keep_test_set: return the whole test set and the training strain positions (for
            baselines scored on the same mixtures, :mod:`xrdpipe.evaluation.grid`).

    Returns:
        The :class:`PhaseFractionResult`.
    """
    start = time.perf_counter()
    identity = store.store_identity(store_path)
    if materials is None:
        order = grid_material_order(completed_material_table(store_path), subset_config.seed)
        if len(order) < n_materials:
            raise TaskError(
                f"n_materials {n_materials} exceeds the {len(order)} completed materials of "
                f"{store_path}"
            )
        ids = order[:n_materials]
    else:
        ids = [str(i) for i in materials]
        if len(ids) != n_materials:
            raise TaskError(f"{len(ids)} materials given but n_materials is {n_materials}")
    dev = pick_device(device or preset.train.device)
    orientation = subset_config.profile.needs_orientation  # March-Dollase needs hkl, rotations
    absorption = preset.mixtures.particle_radius_um is not None  # Brindley needs mu
    train_peaks = load_peaks(
        store_path, "train", ids, device=dev, orientation=orientation, absorption=absorption
    )
    test_peaks = load_peaks(store_path, "test", ids, device=dev)
    profile = subset_config.profile
    mix_cfg = MixtureConfig(
        n_materials=n_materials,
        max_phases=max_phases,
        batch_size=preset.train.batch_size,
        **preset.mixtures.config_fields(),
    )
    train_idx, val_idx = split_train_validation(
        train_peaks.peaks.n_strains, preset.split.train_fraction, seed=subset_config.seed
    )
    train_pool = train_peaks.peaks.select_strains(train_idx)
    set_cfg = mix_cfg.model_copy(update={"batch_size": FIXED_SET_BATCH})
    if record_dir is None and "://" not in str(store_path):
        record_dir = Path(store_path).parent / "fixed_sets"

    def fixed_set(split: str, n: int, seed_offset: int, strain_index: Any = None) -> Any:
        return fixed_mixture_set(
            store_path,
            split,
            ids,
            set_cfg,
            profile,
            n=n,
            seed=subset_config.seed + seed_offset,
            record_dir=record_dir,
            device=dev,
            strain_index=strain_index,
        )

    val_set = fixed_set("train", preset.split.n_validation, VALIDATION_SEED_OFFSET, val_idx)
    val_x, val_y, val_sha = val_set.patterns, val_set.phase_fractions, val_set.sha256
    model_cfg = PhaseCNNConfig(
        n_points=profile.n_points,
        n_materials=n_materials,
        **preset.model.config_fields(),
    )
    seed_everything(seed)  # the initial weights follow ``seed``, not the process's history
    model = PhaseCNN(model_cfg)
    epoch_size = preset.split.epoch_size or len(train_idx) * n_materials
    steps = max(1, math.ceil(epoch_size / preset.train.batch_size))
    train_cfg = loop_config(
        preset.train.config_fields(),
        steps_per_epoch=steps,
        seed=seed,
        device=str(dev),
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        eval_batch_size=256,
    )

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        sampler = MixtureSampler(
            train_pool,
            mix_cfg,
            profile,
            seed=seed_for(seed, epoch),
            device=dev,
            wavelength=train_peaks.wavelength,
        )
        for _ in range(steps):
            patterns, fractions, _ = sampler.sample()
            yield patterns, fractions

    table = train_peaks.materials.set_index("cod_id").loc[ids]
    names = table["phase_name"].astype(str).tolist() if "phase_name" in table else []
    config = {
        "task": "phase-fractions",
        "subset": subset_config.model_dump(mode="json"),
        "preset": preset.model_dump(mode="json"),
        "model": {"name": "phase_cnn", **config_to_dict(model_cfg)},
        "mixtures": mix_cfg.model_dump(mode="json"),
        "train": asdict(train_cfg),
        "data": {
            "n_materials": n_materials,
            "max_phases": max_phases,
            "seed": seed,
            "materials": ids,
            "train_strains": len(train_idx),
            "validation_strains": len(val_idx),
            "test_strains": test_peaks.peaks.n_strains,
            "epoch_size": epoch_size,
            "n_validation": preset.split.n_validation,
            "n_test": preset.split.n_test,
            "material_order": "grid_material_order(subset.seed)",
        },
        "store": identity,
    }
    if names:  # a phase set's names (source: phases), in output order
        config["data"]["names"] = names
    result = train(
        model,
        batches,
        (val_x, val_y),
        TVDLoss(),
        train_cfg,
        metric_fns={"tvd": lambda lo, y: total_variation_distance(torch.softmax(lo, -1), y)},
        callbacks=list(callbacks),
        progress=progress,
        checkpoint_metadata={"task": "phase-fractions", "materials": ids},
    )
    del val_x, val_y
    test_set = fixed_set("test", preset.split.n_test, TEST_SEED_OFFSET)
    test_x, test_y, test_sha = test_set.patterns, test_set.phase_fractions, test_set.sha256
    model.eval()
    pred = predict_batched(model.predict, test_x, PREDICT_BATCH, next(model.parameters()).device)
    tvd = total_variation_distance(pred, test_y.to(pred.device), reduction="none").cpu()
    mae = (pred - test_y.to(pred.device)).abs().mean().item()
    keep = min(MAX_PLOT_PREDICTIONS, pred.shape[0])
    formulas = table["formula"].astype(str).tolist()
    return PhaseFractionResult(
        model=model,
        train=result,
        config=config,
        materials=ids,
        formulas=formulas,
        test_tvd_mean=float(tvd.mean()),
        test_tvd_std=float(tvd.std()) if tvd.numel() > 1 else 0.0,
        test_mae=float(mae),
        test_set_sha256=test_sha,
        test_set_key=test_set.key,
        validation_set_sha256=val_sha,
        n_test=int(test_x.shape[0]),
        predictions=pred[:keep].cpu().numpy(),
        targets=test_y[:keep].cpu().numpy(),
        input_example=test_x[:2].cpu().numpy().astype(np.float32),
        store=identity,
        wall_s=time.perf_counter() - start,
        test_patterns=test_x.cpu() if keep_test_set else None,
        test_fractions=test_y.cpu() if keep_test_set else None,
        train_strain_index=np.asarray(train_idx) if keep_test_set else None,
    )
