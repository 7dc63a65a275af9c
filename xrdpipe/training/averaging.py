"""Polyak averaging of a model's weights during training (``TrainConfig.ema_decay``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


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
