"""The optimizer and the learning-rate schedule of the training loop."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from xrdpipe.training.config import TrainConfig

LR_SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of ``TrainConfig.lr_schedule``."""


def lr_at(cfg: TrainConfig, epoch: int, time_fraction: float = 0.0) -> float:
    """The epoch's learning rate.

    A cosine anneals by epochs or by wall time, whichever is further along, so a run cut by
    its time budget still ends at a small learning rate.
    """
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, max((epoch - 1) / cfg.epochs, time_fraction))
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with decay on weights of rank >= 2 only (nanoGPT's grouping)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)
