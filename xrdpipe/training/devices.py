"""Devices and process-wide torch settings of a training run.

Device choice, seeding, accelerator synchronisation, bf16 autocast, threads and determinism.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

from xrdpipe.errors import ConfigError

if TYPE_CHECKING:
    from xrdpipe.training.config import TrainConfig


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def autocast(
    device: torch.device, amp_bf16: bool, cpu_bf16: bool = False
) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA with ``amp_bf16``, on a CPU with ``cpu_bf16``; else none."""
    if (amp_bf16 and device.type == "cuda") or (cpu_bf16 and device.type == "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def torch_settings(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
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
