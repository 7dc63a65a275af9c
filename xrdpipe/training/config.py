"""A training run's settings, result and error.

:class:`TrainConfig` (the settings, stored in every checkpoint), :class:`TrainResult` (what
:func:`xrdpipe.training.loop.train` returns) and :class:`TrainingError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import Tensor

from xrdpipe.errors import ConfigError, XrdpipeError
from xrdpipe.training.schedule import LR_SCHEDULES

STOP_REASONS = ("completed", "early_stopping", "time_budget", "callback", "data_exhausted")


class TrainingError(XrdpipeError):
    """Training could not go on: the loss diverged, the data ran dry, or a resume mismatched."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; stored in every checkpoint.

    Attributes:
        epochs: last epoch to train (1-based; a resumed run continues up to it).
        steps_per_epoch: optimisation steps per epoch; ``None`` = one pass over the batches.
        batch_size: batch size of the caller's iterator (recorded) and of evaluation chunks.
        lr: peak learning rate of AdamW (Adam when ``weight_decay`` is 0; papers: Adam).
        weight_decay: decoupled weight decay on weights of rank >= 2 (not biases, norms).
        lr_schedule: ``"constant"`` (the papers) or ``"cosine"`` (per epoch, to 0 at ``epochs``
            or at ``max_minutes`` of wall time, whichever comes first).
        grad_clip: clip the global gradient norm to this value; ``None`` = no clipping.
        early_stopping_patience: epochs without validation improvement before stopping;
            ``None`` = never stop early.
        min_delta: an improvement must lower the validation loss by more than this.
        restore_best: load the best validation weights into the model at the end.
        seed: seed of torch, numpy and ``random`` at the start of a fresh run.
        deterministic: ``torch.use_deterministic_algorithms(warn_only=True)`` and no cuDNN
            benchmarking during the run (restored afterwards).
        device: ``"auto"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"``.
        amp_bf16: bf16 autocast for forward passes (CUDA only; ignored elsewhere).
        cpu_bf16: bf16 autocast for forward passes on a CPU (ignored elsewhere): a step of the
            ``synthetic-cpu`` ResNet costs 37 ms instead of 65 on this project's 2-core
            AVX512-BF16 machine (``benchmarks/bf16.py``); the weights, the optimizer and the
            loss stay float32.
        compile: wrap the model in ``torch.compile`` for the steps.
        num_threads: torch CPU threads during the run (restored afterwards); ``None`` = as is.
        checkpoint_dir: folder for ``last.*`` (every ``checkpoint_every`` epochs and at the end,
            resumable) and ``best.*`` (the restored best weights, at the end); ``None`` = none.
        checkpoint_every: epochs between ``last`` checkpoints.
        max_minutes: wall-clock budget; the current epoch is cut short and validated when it
            runs out. ``None`` = no budget.
        eval_batch_size: chunk size of :func:`evaluate`; ``None`` = ``batch_size``.
        sync_timing: synchronise the accelerator around data loading so that
            ``data_time_fraction`` is exact (costs some CPU/GPU overlap; CPU runs unaffected).
        ema_decay: keep an exponential moving average of the weights with this decay per
            step (Polyak averaging, see :class:`WeightAverage`); validation, early stopping,
            the best weights and the checkpoints' ``best`` then use the average. ``None``:
            the raw weights (the papers).
    """

    epochs: int = 100
    steps_per_epoch: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    grad_clip: float | None = None
    early_stopping_patience: int | None = 10
    min_delta: float = 0.0
    restore_best: bool = True
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"
    amp_bf16: bool = True
    cpu_bf16: bool = False
    compile: bool = False
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    max_minutes: float | None = None
    eval_batch_size: int | None = None
    sync_timing: bool = True
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        positive["checkpoint_every"] = self.checkpoint_every
        for name in ("steps_per_epoch", "num_threads", "eval_batch_size", "max_minutes"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        bad = {k: v for k, v in positive.items() if not v > 0}
        if bad:
            raise ConfigError(f"TrainConfig values {bad} must be > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"TrainConfig {self.lr_schedule=} must be one of {LR_SCHEDULES}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError(f"TrainConfig {self.early_stopping_patience=} must be >= 1 or None")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"TrainConfig {self.ema_decay=} must be in (0, 1) or None")
        if self.weight_decay < 0 or self.min_delta < 0:
            raise ConfigError(
                f"TrainConfig {self.weight_decay=} and {self.min_delta=} must be >= 0"
            )


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: one record per epoch (see :func:`train`), resumed epochs included.
        best_state: CPU copy of the weights with the lowest validation loss (or the last ones
            when there is no validation).
        best_epoch: epoch of ``best_state``.
        best_val_loss: its validation loss (``nan`` without validation).
        stopped_early: ``True`` when early stopping ended the run.
        stop_reason: one of :data:`STOP_REASONS`.
        wall_s: wall-clock seconds of this call.
        checkpoint: path of the final ``best`` checkpoint, if one was written.
    """

    history: list[dict[str, Any]]
    best_state: dict[str, Tensor] | None
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    stop_reason: str
    wall_s: float
    checkpoint: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig))
"""The fields of :class:`TrainConfig`, in order."""


def loop_config(options: Mapping[str, Any], **run: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a preset's ``train`` section, passed on by field name.

    Args:
        options: the section's fields (:class:`~xrdpipe.config.LoopSettings`), each the
            :class:`TrainConfig` field of the same name.
        **run: the run's own fields (seed, steps per epoch, device, checkpoints), over them.

    Raises:
        ConfigError: a name that is not a :class:`TrainConfig` field.
    """
    unknown = sorted(set(options) - set(TRAIN_FIELDS))
    if unknown:
        raise ConfigError(f"{unknown} are not TrainConfig fields; allowed: {list(TRAIN_FIELDS)}")
    return TrainConfig(**{**options, **run})
