"""The training-state part of a checkpoint: what resuming a run needs.

A checkpoint's model part (``<stem>.safetensors`` and ``<stem>.json``) is read and written by
:mod:`xrdpipe.models.checkpoints`; its names are re-exported here. This module adds the
optional ``<stem>.train.pt``: optimizer state, epoch, RNG states, history, best weights,
plain dicts of tensors and numbers written with ``torch.save`` and read back with
``torch.load(weights_only=True)``, and the helpers that save and restore what it holds
(:func:`rng_states`, :func:`restore_training_state`, :func:`with_state`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xrdpipe.models import checkpoints as model_checkpoints
from xrdpipe.models.checkpoints import (
    FORMAT_VERSION,
    HEADER_KEY,
    CheckpointError,
    CheckpointPaths,
    load_checkpoint,
    load_state_dict,
    read_metadata,
)

__all__ = [
    "FORMAT_VERSION",
    "HEADER_KEY",
    "CheckpointError",
    "CheckpointPaths",
    "load_checkpoint",
    "load_state_dict",
    "load_training_state",
    "read_metadata",
    "restore_training_state",
    "rng_states",
    "save_checkpoint",
    "save_training_state",
    "with_state",
]


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    train_config: Any = None,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """:func:`xrdpipe.models.checkpoints.save_checkpoint`, and the state to resume training.

    ``training_state`` (plain dicts of tensors, numbers, strings and lists) goes to
    ``<stem>.train.pt``. Returns the path of the ``.safetensors`` file.
    """
    weights = model_checkpoints.save_checkpoint(
        path, model, train_config=train_config, metadata=metadata
    )
    if training_state is not None:
        save_training_state(path, training_state)
    return weights


def save_training_state(path: str | os.PathLike[str], training_state: dict[str, Any]) -> Path:
    """Write the resume state of a checkpoint (``<stem>.train.pt``); its path."""
    paths = CheckpointPaths.of(path)
    paths.training_state.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.training_state.with_name(paths.training_state.name + ".tmp")
    torch.save(training_state, tmp)
    os.replace(tmp, paths.training_state)
    return paths.training_state


def load_training_state(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """The resume state of a checkpoint, read with ``torch.load(weights_only=True)``."""
    paths = CheckpointPaths.of(path)
    if not paths.training_state.exists():
        raise CheckpointError(
            f"checkpoint {paths.weights} has no training state {paths.training_state.name}; "
            "it was saved for inference only and cannot be resumed"
        )
    try:
        return torch.load(paths.training_state, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types for a bad or unsafe file
        raise CheckpointError(f"cannot read training state {paths.training_state}: {exc}") from exc


def rng_states() -> dict[str, Any]:
    """The torch (and CUDA) RNG states, for a resumable checkpoint."""
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def with_state(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """``model`` if it already holds ``state``; otherwise a CPU copy holding it."""
    current = model.state_dict()
    if all(torch.equal(current[k].cpu(), v) for k, v in state.items()):
        return model
    clone = copy.deepcopy(getattr(model, "_orig_mod", model)).cpu()
    clone.load_state_dict(state)
    return clone


def restore_training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    path: str | os.PathLike[str],
    device: torch.device,
) -> dict[str, Any]:
    """Load weights, optimizer state and RNG states of a ``last`` checkpoint; return the rest.

    The caller checks first that the checkpoint holds ``model``'s config.
    """
    state = load_training_state(path, "cpu")
    model.load_state_dict(load_state_dict(path, device))
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state
