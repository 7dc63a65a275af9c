"""One training loop for both models (a-CNN classifier and phase-fraction CNN).

The loop knows nothing of MLflow or Prefect: :func:`train` returns a :class:`TrainResult` and
hands each epoch's record to callbacks (the lead's MLflow logger is one). In the spirit of
torchvision's ``references/classification/train.py``, the pieces are plain functions with
explicit arguments:

1. :func:`~xrdpipe.training.devices.pick_device` chooses CUDA, then MPS, then the CPU (or
   what the config names);
2. :func:`train_one_epoch` runs ``steps`` optimisation steps on batches ``(x, y)`` coming from
   any iterator on any device (bf16 autocast on CUDA), timing how much of each step went into
   producing the batch;
3. :func:`evaluate` computes the loss and metric functions on a validation set in chunks;
4. :func:`train` seeds, optionally compiles, loops over epochs with a cosine or constant
   learning rate (:mod:`xrdpipe.training.schedule`), optionally validates an exponential
   moving average of the weights (:class:`~xrdpipe.training.averaging.WeightAverage`), stops
   early on a validation-loss plateau (restoring the best
   weights), keeps to a wall-clock budget, checkpoints and resumes (model, optimizer, epoch,
   RNG states, history, best weights, the weight average; :mod:`xrdpipe.training.checkpoints`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xrdpipe.models import config_from_dict
from xrdpipe.training.averaging import WeightAverage
from xrdpipe.training.batches import Batch, BatchSource, EpochBatches
from xrdpipe.training.checkpoints import (
    read_metadata,
    restore_training_state,
    rng_states,
    save_checkpoint,
    with_state,
)
from xrdpipe.training.config import STOP_REASONS, TrainConfig, TrainingError, TrainResult
from xrdpipe.training.devices import (
    autocast,
    pick_device,
    seed_everything,
    synchronize,
    torch_settings,
)
from xrdpipe.training.progress import TrainingBar
from xrdpipe.training.schedule import lr_at, make_optimizer

__all__ = [
    "Batch",
    "BatchSource",
    "Callback",
    "LossFn",
    "MetricFn",
    "STOP_REASONS",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "Validation",
    "WeightAverage",
    "evaluate",
    "pick_device",
    "seed_everything",
    "train",
    "train_one_epoch",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], Tensor | float]
Callback = Callable[[dict[str, Any]], bool | None]
"""Called with each epoch's record; returning ``True`` asks the loop to stop."""
Validation = tuple[Tensor, Tensor] | Callable[[nn.Module], Mapping[str, float]]
"""A validation set ``(x, y)``, or a function of the model returning ``{"loss": ..., ...}``."""


def train_one_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    steps: int | None = None,
    amp_bf16: bool = True,
    cpu_bf16: bool = False,
    grad_clip: float | None = None,
    sync_timing: bool = True,
    deadline: float | None = None,
    progress: TrainingBar | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run up to ``steps`` optimisation steps (all batches when ``None``).

    Args:
        model: the model (possibly compiled), put in train mode here.
        loss_fn: ``loss_fn(outputs_float32, targets) -> scalar``.
        optimizer: its optimizer.
        batches: ``(x, y)`` pairs on any device; moved to ``device`` here.
        device: where the model lives.
        steps: steps to run at most.
        amp_bf16: bf16 autocast of the forward pass on CUDA.
        cpu_bf16: bf16 autocast of the forward pass on a CPU.
        grad_clip: maximum global gradient norm, or ``None``.
        sync_timing: synchronise the accelerator so batch-production time is exact.
        deadline: ``time.perf_counter()`` value after which the epoch is cut short.
        progress: the run's bar, advanced by one per step.
        after_step: called after each optimizer step (the weight average's update).

    Returns:
        ``train_loss`` (sample-weighted mean), ``steps``, ``samples``, ``train_s``,
        ``samples_per_s``, ``data_time_fraction`` and ``out_of_time``.
    """
    model.train()
    sync = sync_timing and device.type != "cpu"
    total_loss = torch.zeros((), device=device)
    n_steps = n_samples = 0
    data_s = 0.0
    out_of_time = False
    iterator = iter(batches)
    start = time.perf_counter()
    while steps is None or n_steps < steps:
        t0 = time.perf_counter()
        try:
            x, y = next(iterator)
        except StopIteration:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if sync:
            synchronize(device)
        data_s += time.perf_counter() - t0
        with autocast(device, amp_bf16, cpu_bf16):
            outputs = model(x)
        loss = loss_fn(outputs.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if after_step is not None:
            after_step()
        total_loss += loss.detach() * x.shape[0]
        n_steps += 1
        n_samples += x.shape[0]
        if sync:
            synchronize(device)
        if progress is not None:
            progress.update(1)
        if deadline is not None and time.perf_counter() > deadline:
            out_of_time = True
            break
    train_s = time.perf_counter() - start
    train_loss = total_loss.item() / max(n_samples, 1) if n_samples else math.nan
    return {
        "train_loss": train_loss,
        "steps": n_steps,
        "samples": n_samples,
        "train_s": train_s,
        "samples_per_s": n_samples / train_s if train_s > 0 else math.nan,
        "data_time_fraction": data_s / train_s if train_s > 0 else math.nan,
        "out_of_time": out_of_time,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    device: torch.device,
    *,
    metric_fns: Mapping[str, MetricFn] | None = None,
    batch_size: int = 1024,
    amp_bf16: bool = True,
    cpu_bf16: bool = False,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on a validation set, in chunks of ``batch_size``.

    Metric functions see all outputs at once (float32 logits on ``device``) and the targets, so
    accuracy, F1 or TVD come out exact rather than averaged over chunks.

    Args:
        model: the model, put in eval mode here (and left so).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` with mean reduction.
        x: inputs ``(n, ...)`` on any device.
        y: targets ``(n, ...)`` on any device.
        device: where the model lives.
        metric_fns: name -> ``fn(outputs, targets)`` returning a number or a 0-d tensor.
        batch_size: chunk size.
        amp_bf16: bf16 autocast on CUDA.
        cpu_bf16: bf16 autocast on a CPU.

    Returns:
        ``{"loss": ..., <metric name>: ...}``.
    """
    assert x.shape[0] == y.shape[0], f"x has {x.shape[0]} samples but y has {y.shape[0]}"
    model.eval()
    outputs = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(device, non_blocking=True)
        with autocast(device, amp_bf16, cpu_bf16):
            outputs.append(model(chunk).float())
    logits = torch.cat(outputs)
    targets = y.to(device)
    result = {"loss": float(loss_fn(logits, targets))}
    for name, fn in (metric_fns or {}).items():
        result[name] = float(fn(logits, targets))
    return result


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(
    model: nn.Module,
    train_batches: BatchSource,
    validation: Validation | None,
    loss_fn: LossFn,
    cfg: TrainConfig,
    *,
    metric_fns: Mapping[str, MetricFn] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    resume_from: str | os.PathLike[str] | None = None,
    checkpoint_metadata: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return its history and best weights.

    Each epoch's record (also passed to every callback) holds ``epoch`` (1-based),
    ``train_loss``, ``val_loss``, ``metrics`` (dict), ``lr``, ``samples_per_s``,
    ``data_time_fraction`` (share of step time spent producing and moving the batch),
    ``steps``, ``samples``, ``epoch_s`` and ``is_best``.

    Args:
        model: a model of :mod:`xrdpipe.models` (any ``nn.Module`` if no checkpoints are used).
        train_batches: see :data:`BatchSource`.
        validation: a validation set ``(x, y)`` (evaluated with ``loss_fn`` and ``metric_fns``)
            or ``fn(model) -> {"loss": ..., other metrics}``; ``None`` disables early stopping
            and best-weight tracking (the last weights count as best).
        loss_fn: ``loss_fn(logits_float32, targets) -> scalar``.
        cfg: the run's settings.
        metric_fns: name -> ``fn(logits, targets)`` computed on the validation set.
        callbacks: called with each epoch's record; returning ``True`` stops the run.
        progress: show a tqdm bar on stderr.
        resume_from: a ``last`` checkpoint of an earlier run of the same model: continues
            after its epoch with its optimizer state, RNG states, history and best weights.
        checkpoint_metadata: extra JSON-ready values for the checkpoints (class names,
            material ids, ...).

    Returns:
        The :class:`TrainResult`; ``model`` holds the best weights if ``cfg.restore_best``.
    """
    wall_start = time.perf_counter()
    deadline = None if cfg.max_minutes is None else wall_start + 60.0 * cfg.max_minutes
    device = pick_device(cfg.device)
    model.to(device)
    amp = cfg.amp_bf16 and device.type == "cuda"
    checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    metadata = dict(checkpoint_metadata or {})

    with torch_settings(cfg, device):
        optimizer = make_optimizer(model, cfg)
        average = None if cfg.ema_decay is None else WeightAverage(model, cfg.ema_decay)
        run = _start(model, optimizer, average, cfg, resume_from, device)
        step_model = torch.compile(model) if cfg.compile else model
        batches = EpochBatches(train_batches)
        steps = cfg.steps_per_epoch
        bar = TrainingBar(cfg, run.start_epoch, progress, wall_start)
        stop_reason = "completed"
        epoch = run.start_epoch - 1
        try:
            for epoch in range(run.start_epoch, cfg.epochs + 1):
                lr = _set_lr(optimizer, cfg, epoch, wall_start)
                epoch_start = time.perf_counter()
                stats = train_one_epoch(
                    step_model,
                    loss_fn,
                    optimizer,
                    batches.epoch(epoch, steps),
                    device,
                    steps=steps,
                    amp_bf16=amp,
                    cpu_bf16=cfg.cpu_bf16,
                    grad_clip=cfg.grad_clip,
                    sync_timing=cfg.sync_timing,
                    deadline=deadline,
                    progress=bar,
                    after_step=None if average is None else lambda: average.update(model),
                )
                if stats["steps"] == 0:
                    if epoch == run.start_epoch:
                        raise TrainingError(f"train_batches yielded no batch in epoch {epoch}")
                    epoch -= 1
                    stop_reason = "data_exhausted"
                    break
                if not math.isfinite(stats["train_loss"]):
                    raise TrainingError(
                        f"training loss is {stats['train_loss']} in epoch {epoch} (lr={lr}); "
                        "lower lr, set grad_clip, or check the batches for nan"
                    )
                with contextlib.nullcontext() if average is None else average.applied(model):
                    val_loss, metrics = _validate(
                        step_model, validation, loss_fn, metric_fns, device, cfg, amp
                    )
                    is_best = _track_best(run, model, validation, val_loss, epoch, cfg)
                record = _record(epoch, stats, val_loss, metrics, lr, epoch_start, is_best)
                run.history.append(record)
                bar.epoch_done(epoch, train=f"{record['train_loss']:.4g}", val=f"{val_loss:.4g}")
                stop_reason = _stop_reason(record, stats, deadline, validation, cfg, run, callbacks)
                last = stop_reason != "completed" or epoch == cfg.epochs
                if checkpoint_dir and (epoch % cfg.checkpoint_every == 0 or last):
                    _save_last(checkpoint_dir, model, cfg, metadata, epoch, optimizer, run, average)
                if stop_reason != "completed":
                    break
        finally:
            bar.close()

        if cfg.restore_best and run.best_state is not None:
            model.load_state_dict(run.best_state)
        checkpoint = None
        if checkpoint_dir and run.best_state is not None:
            checkpoint = _save_best(checkpoint_dir, model, cfg, metadata, run)
    return TrainResult(
        history=run.history,
        best_state=run.best_state,
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val if validation is not None else math.nan,
        stopped_early=stop_reason == "early_stopping",
        stop_reason=stop_reason,
        wall_s=time.perf_counter() - wall_start,
        checkpoint=checkpoint,
        extra={"last_epoch": epoch, "device": str(device)},
    )


@dataclass
class _RunState:
    """What the epochs of :func:`train` carry forward (and a ``last`` checkpoint saves)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Tensor] | None = None
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    start_epoch: int = 1


def _start(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    average: WeightAverage | None,
    cfg: TrainConfig,
    resume_from: str | os.PathLike[str] | None,
    device: torch.device,
) -> _RunState:
    """A fresh run (seeded with ``cfg.seed``) or the run saved in ``resume_from``."""
    if resume_from is None:
        seed_everything(cfg.seed)
        return _RunState()
    state = _resume(model, optimizer, resume_from, device)
    if average is not None:
        if "weight_average" not in state:
            raise TrainingError(
                f"checkpoint {resume_from} was trained without ema_decay; resume it "
                "with ema_decay=None"
            )
        average.load_state_dict(state["weight_average"])
    return _RunState(
        history=state["history"],
        best_state=state["best_state"],
        best_val=state["best_val_loss"],
        best_epoch=state["best_epoch"],
        bad_epochs=state["bad_epochs"],
        start_epoch=state["epoch"] + 1,
    )


def _set_lr(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, epoch: int, wall_start: float
) -> float:
    """Set the epoch's learning rate (by epochs or by the time budget used); return it."""
    used = 0.0
    if cfg.max_minutes is not None:
        used = (time.perf_counter() - wall_start) / (60.0 * cfg.max_minutes)
    lr = lr_at(cfg, epoch, used)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _track_best(
    run: _RunState,
    model: nn.Module,
    validation: Validation | None,
    val_loss: float,
    epoch: int,
    cfg: TrainConfig,
) -> bool:
    """Keep the model's weights if ``val_loss`` is the best yet, else count a bad epoch."""
    is_best = validation is None or val_loss < run.best_val - cfg.min_delta
    if is_best:
        run.best_val, run.best_epoch, run.bad_epochs = val_loss, epoch, 0
        run.best_state = _cpu_state(model)
    else:
        run.bad_epochs += 1
    return is_best


def _record(
    epoch: int,
    stats: Mapping[str, Any],
    val_loss: float,
    metrics: dict[str, float],
    lr: float,
    epoch_start: float,
    is_best: bool,
) -> dict[str, Any]:
    """The epoch's record (see :func:`train`)."""
    return {
        "epoch": epoch,
        "train_loss": stats["train_loss"],
        "val_loss": val_loss,
        "metrics": metrics,
        "lr": lr,
        "samples_per_s": stats["samples_per_s"],
        "data_time_fraction": stats["data_time_fraction"],
        "steps": stats["steps"],
        "samples": stats["samples"],
        "epoch_s": time.perf_counter() - epoch_start,
        "is_best": bool(is_best),
    }


def _stop_reason(
    record: dict[str, Any],
    stats: Mapping[str, Any],
    deadline: float | None,
    validation: Validation | None,
    cfg: TrainConfig,
    run: _RunState,
    callbacks: Sequence[Callback],
) -> str:
    """Why the run stops after this epoch (``completed``: it goes on); calls the callbacks."""
    stop_reason = "completed"
    if stats["out_of_time"] or (deadline and time.perf_counter() > deadline):
        stop_reason = "time_budget"
    patience = cfg.early_stopping_patience
    if validation is not None and patience is not None and run.bad_epochs >= patience:
        stop_reason = "early_stopping"
    if any([callback(dict(record)) for callback in callbacks]):
        stop_reason = "callback"
    return stop_reason


def _save_last(
    checkpoint_dir: Path,
    model: nn.Module,
    cfg: TrainConfig,
    metadata: dict[str, Any],
    epoch: int,
    optimizer: torch.optim.Optimizer,
    run: _RunState,
    average: WeightAverage | None,
) -> None:
    """Write the resumable ``last`` checkpoint of ``epoch``."""
    save_checkpoint(
        checkpoint_dir / "last",
        model,
        train_config=cfg,
        metadata={**metadata, "epoch": epoch},
        training_state={
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "history": run.history,
            "best_state": run.best_state,
            "best_val_loss": run.best_val,
            "best_epoch": run.best_epoch,
            "bad_epochs": run.bad_epochs,
            "rng": rng_states(),
            "train_config": asdict(cfg),
            **({} if average is None else {"weight_average": average.state_dict()}),
        },
    )


def _save_best(
    checkpoint_dir: Path,
    model: nn.Module,
    cfg: TrainConfig,
    metadata: dict[str, Any],
    run: _RunState,
) -> Path:
    """Write the ``best`` checkpoint (the best weights and their epoch's record)."""
    assert run.best_state is not None
    best_record = next((r for r in run.history if r["epoch"] == run.best_epoch), {})
    return save_checkpoint(
        checkpoint_dir / "best",
        with_state(model, run.best_state),
        train_config=cfg,
        metadata={**metadata, "epoch": run.best_epoch, "record": best_record},
    )


def _validate(
    model: nn.Module,
    validation: Validation | None,
    loss_fn: LossFn,
    metric_fns: Mapping[str, MetricFn] | None,
    device: torch.device,
    cfg: TrainConfig,
    amp: bool,
) -> tuple[float, dict[str, float]]:
    if validation is None:
        return math.nan, {}
    if callable(validation):
        model.eval()
        with torch.no_grad():
            result = dict(validation(model))
        if "loss" not in result:
            raise TrainingError(f"the validation function returned {sorted(result)}; need 'loss'")
    else:
        x, y = validation
        result = evaluate(
            model,
            loss_fn,
            x,
            y,
            device,
            metric_fns=metric_fns,
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            amp_bf16=amp,
            cpu_bf16=cfg.cpu_bf16,
        )
    loss = float(result.pop("loss"))
    return loss, {k: float(v) for k, v in result.items()}


def _resume(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    path: str | os.PathLike[str],
    device: torch.device,
) -> dict[str, Any]:
    """Load weights, optimizer state and RNG states of a ``last`` checkpoint; return the rest."""
    sidecar = read_metadata(path)
    saved = config_from_dict(sidecar["model"], sidecar["model_config"])
    if saved != getattr(model, "config", None):
        raise TrainingError(
            f"checkpoint {path} holds {saved}, but the model to resume has "
            f"{getattr(model, 'config', None)}"
        )
    return restore_training_state(model, optimizer, path, device)
