"""One training loop for both models (a-CNN classifier and phase-fraction CNN).

The loop knows nothing of MLflow or Prefect: :func:`train` returns a :class:`TrainResult` and
hands each epoch's record to callbacks (the lead's MLflow logger is one). In the spirit of
torchvision's ``references/classification/train.py``, the pieces are plain functions with
explicit arguments:

1. :func:`pick_device` chooses CUDA, then MPS, then the CPU (or what the config names);
2. :func:`train_one_epoch` runs ``steps`` optimisation steps on batches ``(x, y)`` coming from
   any iterator on any device (bf16 autocast on CUDA), timing how much of each step went into
   producing the batch;
3. :func:`evaluate` computes the loss and metric functions on a validation set in chunks;
4. :func:`train` seeds, optionally compiles, loops over epochs with a cosine or constant
   learning rate, optionally validates an exponential moving average of the weights
   (:class:`WeightAverage`), stops early on a validation-loss plateau (restoring the best
   weights), keeps to a wall-clock budget, checkpoints and resumes (model, optimizer, epoch,
   RNG states, history, best weights, the weight average).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from xrdpipe.errors import ConfigError, XrdpipeError
from xrdpipe.models import config_from_dict
from xrdpipe.training.checkpoints import (
    load_state_dict,
    load_training_state,
    read_metadata,
    save_checkpoint,
)

Batch = tuple[Tensor, Tensor]
BatchSource = Iterable[Batch] | Callable[[int], Iterable[Batch]]
"""Training batches: an (endless) iterator, a re-iterable (list, DataLoader), or a function of
the 1-based epoch returning that epoch's batches (which makes resuming exact)."""
LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], Tensor | float]
Callback = Callable[[dict[str, Any]], bool | None]
"""Called with each epoch's record; returning ``True`` asks the loop to stop."""
Validation = tuple[Tensor, Tensor] | Callable[[nn.Module], Mapping[str, float]]
"""A validation set ``(x, y)``, or a function of the model returning ``{"loss": ..., ...}``."""

LR_SCHEDULES = ("constant", "cosine")
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


def pick_device(preference: str = "auto") -> torch.device:
    """The device to train on: CUDA, then MPS, then the CPU, unless ``preference`` names one.

    Args:
        preference: ``"auto"`` or a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            ``"mps"``).

    Returns:
        The device; an unavailable explicit choice raises :class:`~xrdpipe.errors.ConfigError`.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ConfigError(f"{preference=} is not a torch device string") from exc
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        raise ConfigError(f"device {preference=} is not available here; use 'auto' or 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"{preference=}: only {torch.cuda.device_count()} CUDA devices")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global generator and ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _autocast(device: torch.device, amp_bf16: bool) -> contextlib.AbstractContextManager:
    if amp_bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    device: torch.device,
    *,
    steps: int | None = None,
    amp_bf16: bool = True,
    grad_clip: float | None = None,
    sync_timing: bool = True,
    deadline: float | None = None,
    progress: tqdm | None = None,
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
        grad_clip: maximum global gradient norm, or ``None``.
        sync_timing: synchronise the accelerator so batch-production time is exact.
        deadline: ``time.perf_counter()`` value after which the epoch is cut short.
        progress: a tqdm bar advanced by one per step.
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
            _synchronize(device)
        data_s += time.perf_counter() - t0
        with _autocast(device, amp_bf16):
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
            _synchronize(device)
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

    Returns:
        ``{"loss": ..., <metric name>: ...}``.
    """
    assert x.shape[0] == y.shape[0], f"x has {x.shape[0]} samples but y has {y.shape[0]}"
    model.eval()
    outputs = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].to(device, non_blocking=True)
        with _autocast(device, amp_bf16):
            outputs.append(model(chunk).float())
    logits = torch.cat(outputs)
    targets = y.to(device)
    result = {"loss": float(loss_fn(logits, targets))}
    for name, fn in (metric_fns or {}).items():
        result[name] = float(fn(logits, targets))
    return result


class _Batches:
    """Hands out each epoch's batches from any :data:`BatchSource`."""

    def __init__(self, source: BatchSource) -> None:
        self.source = source
        self._iterator: Iterator[Batch] | None = None

    def epoch(self, epoch: int, steps: int | None) -> Iterable[Batch]:
        source = self.source
        if callable(source) and not isinstance(source, Iterable):
            return source(epoch)  # that epoch's batches
        if isinstance(source, Iterator) or steps is None:
            return source  # an iterator goes on where it stopped; a re-iterable starts again
        return self._restarting(steps)

    def _restarting(self, steps: int) -> Iterator[Batch]:
        """``steps`` batches from a re-iterable, starting it again whenever it runs out."""
        for _ in range(steps):
            if self._iterator is None:
                self._iterator = iter(self.source)  # type: ignore[arg-type]
            try:
                yield next(self._iterator)
            except StopIteration:
                self._iterator = iter(self.source)  # type: ignore[arg-type]
                yield next(self._iterator)


def _lr_at(cfg: TrainConfig, epoch: int, time_fraction: float = 0.0) -> float:
    """The epoch's learning rate.

    A cosine anneals by epochs or by wall time, whichever is further along, so a run cut by
    its time budget still ends at a small learning rate.
    """
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, max((epoch - 1) / cfg.epochs, time_fraction))
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with decay on weights of rank >= 2 only (nanoGPT's grouping)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


@contextlib.contextmanager
def _torch_settings(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Apply threads and determinism for the run, restoring the process's settings after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        if cfg.num_threads is not None:
            torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = device.type == "cuda" and not cfg.deterministic
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class WeightAverage:
    """Exponential moving average of a model's floating-point state (Polyak averaging).

    After each optimizer step, ``average <- d * average + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))`` at update ``n`` (a warm-up, so the early average is
    not dominated by the random initialisation). Buffers (batch-norm running statistics) are
    averaged the same way; integer buffers (batch counters) are not averaged.

    An average of the weights along a constant-learning-rate trajectory sits nearer the
    centre of the low-loss region than any one step, which validates and generalises better
    (Polyak & Juditsky 1992; Izmailov et al. 2018).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for key, value in model.state_dict().items():
            if key in self.state:
                self.state[key].lerp_(value.detach().to(self.state[key].dtype), 1.0 - decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Let ``model`` hold the average inside the block, its own weights again after it."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.state}
        model.load_state_dict(self.state, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(own, strict=False)

    def state_dict(self) -> dict[str, Any]:
        """CPU tensors and the update count (for a ``last`` checkpoint)."""
        return {
            "decay": self.decay,
            "updates": self.updates,
            "state": {k: v.to("cpu", copy=True) for k, v in self.state.items()},
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (onto the average's device)."""
        self.updates = int(saved["updates"])
        for key, value in saved["state"].items():
            self.state[key].copy_(value)


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

    with _torch_settings(cfg, device):
        optimizer = _optimizer(model, cfg)
        history: list[dict[str, Any]] = []
        best_state: dict[str, Tensor] | None = None
        best_val, best_epoch, bad_epochs, start_epoch = math.inf, 0, 0, 1
        average = None if cfg.ema_decay is None else WeightAverage(model, cfg.ema_decay)
        if resume_from is not None:
            state = _resume(model, optimizer, resume_from, device)
            if average is not None:
                if "weight_average" not in state:
                    raise TrainingError(
                        f"checkpoint {resume_from} was trained without ema_decay; resume it "
                        "with ema_decay=None"
                    )
                average.load_state_dict(state["weight_average"])
            history = state["history"]
            best_state = state["best_state"]
            best_val, best_epoch = state["best_val_loss"], state["best_epoch"]
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
        else:
            seed_everything(cfg.seed)
        step_model = torch.compile(model) if cfg.compile else model
        batches = _Batches(train_batches)
        steps = cfg.steps_per_epoch
        bar = tqdm(
            total=None if steps is None else steps * cfg.epochs,
            initial=0 if steps is None else steps * (start_epoch - 1),
            disable=not progress,
            desc="train",
            dynamic_ncols=True,
        )
        stop_reason = "completed"
        epoch = start_epoch - 1
        try:
            for epoch in range(start_epoch, cfg.epochs + 1):
                used = 0.0
                if cfg.max_minutes is not None:
                    used = (time.perf_counter() - wall_start) / (60.0 * cfg.max_minutes)
                lr = _lr_at(cfg, epoch, used)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                epoch_start = time.perf_counter()
                stats = train_one_epoch(
                    step_model,
                    loss_fn,
                    optimizer,
                    batches.epoch(epoch, steps),
                    device,
                    steps=steps,
                    amp_bf16=amp,
                    grad_clip=cfg.grad_clip,
                    sync_timing=cfg.sync_timing,
                    deadline=deadline,
                    progress=bar,
                    after_step=None if average is None else lambda: average.update(model),
                )
                if stats["steps"] == 0:
                    if epoch == start_epoch:
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
                    is_best = validation is None or val_loss < best_val - cfg.min_delta
                    if is_best:
                        best_val, best_epoch, bad_epochs = val_loss, epoch, 0
                        best_state = _cpu_state(model)
                    else:
                        bad_epochs += 1
                record = {
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
                history.append(record)
                bar.set_postfix(
                    epoch=epoch, train=f"{record['train_loss']:.4g}", val=f"{val_loss:.4g}"
                )
                if stats["out_of_time"] or (deadline and time.perf_counter() > deadline):
                    stop_reason = "time_budget"
                patience = cfg.early_stopping_patience
                if validation is not None and patience is not None and bad_epochs >= patience:
                    stop_reason = "early_stopping"
                if any([callback(dict(record)) for callback in callbacks]):
                    stop_reason = "callback"
                last = stop_reason != "completed" or epoch == cfg.epochs
                if checkpoint_dir and (epoch % cfg.checkpoint_every == 0 or last):
                    save_checkpoint(
                        checkpoint_dir / "last",
                        model,
                        train_config=cfg,
                        metadata={**metadata, "epoch": epoch},
                        training_state={
                            "epoch": epoch,
                            "optimizer": optimizer.state_dict(),
                            "history": history,
                            "best_state": best_state,
                            "best_val_loss": best_val,
                            "best_epoch": best_epoch,
                            "bad_epochs": bad_epochs,
                            "rng": _rng_states(),
                            "train_config": asdict(cfg),
                            **({} if average is None else {"weight_average": average.state_dict()}),
                        },
                    )
                if stop_reason != "completed":
                    break
        finally:
            bar.close()

        if cfg.restore_best and best_state is not None:
            model.load_state_dict(best_state)
        checkpoint = None
        if checkpoint_dir and best_state is not None:
            best_record = next((r for r in history if r["epoch"] == best_epoch), {})
            checkpoint = save_checkpoint(
                checkpoint_dir / "best",
                _with_state(model, best_state),
                train_config=cfg,
                metadata={**metadata, "epoch": best_epoch, "record": best_record},
            )
    return TrainResult(
        history=history,
        best_state=best_state,
        best_epoch=best_epoch,
        best_val_loss=best_val if validation is not None else math.nan,
        stopped_early=stop_reason == "early_stopping",
        stop_reason=stop_reason,
        wall_s=time.perf_counter() - wall_start,
        checkpoint=checkpoint,
        extra={"last_epoch": epoch, "device": str(device)},
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
        )
    loss = float(result.pop("loss"))
    return loss, {k: float(v) for k, v in result.items()}


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _with_state(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """``model`` if it already holds ``state``; otherwise a CPU copy holding it."""
    current = model.state_dict()
    if all(torch.equal(current[k].cpu(), v) for k, v in state.items()):
        return model
    clone = copy.deepcopy(getattr(model, "_orig_mod", model)).cpu()
    clone.load_state_dict(state)
    return clone


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
    state = load_training_state(path, "cpu")
    model.load_state_dict(load_state_dict(path, device))
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state
