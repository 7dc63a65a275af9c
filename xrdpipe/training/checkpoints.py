"""The training-state part of a checkpoint: what resuming a run needs.

A checkpoint's model part (``<stem>.safetensors`` and ``<stem>.json``) is read and written by
:mod:`xrdpipe.models.checkpoints`; its names are re-exported here. This module adds the
optional ``<stem>.train.pt``: optimizer state, epoch, RNG states, history, best weights,
plain dicts of tensors and numbers written with ``torch.save`` and read back with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

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
    "save_checkpoint",
    "save_training_state",
]


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    train_config: Any = None,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a model checkpoint (and optionally the state to resume training).

    Args:
        path: the checkpoint's stem or one of its file names; parent folders are created.
        model: a registered model (``model.config`` names the class); a ``torch.compile``
            wrapper is unwrapped.
        train_config: the training config (a dataclass or a dict), stored in the sidecar.
        metadata: extra JSON-ready values (class names, material ids, metrics, run ids).
        training_state: plain dict of tensors, numbers, strings, lists and dicts for resuming.

    Returns:
        The path of the ``.safetensors`` file.
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
