"""Model checkpoints that carry their config and never unpickle arbitrary objects.

A checkpoint ``<stem>`` is up to three files side by side:

* ``<stem>.safetensors``: the model's ``state_dict`` (safetensors: no code can run on load);
* ``<stem>.json``: the sidecar: format version, model name, model config, train config and any
  extra metadata (class names, material ids, metrics); a copy sits in the safetensors header;
* ``<stem>.train.pt`` (optional): what resuming needs (optimizer state, epoch, RNG states,
  history, best weights), plain dicts of tensors and numbers written with ``torch.save`` and
  read back with ``torch.load(weights_only=True)``; written and read by
  :mod:`xrdpipe.training.checkpoints`.

Paths may be given as the stem or as any of the three files. This module reads and writes the
model part (what tracking and predict need); the resume state belongs to training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from xrdpipe.errors import XrdpipeError
from xrdpipe.models import build_model, config_from_dict, config_to_dict, model_name

FORMAT_VERSION = 1
"""Version of the sidecar layout; bumped when a key changes meaning."""

HEADER_KEY = "xrdpipe"
"""Key of the JSON sidecar copy inside the safetensors header metadata."""


class CheckpointError(XrdpipeError):
    """A checkpoint is missing, unreadable or does not match the model it should restore."""


@dataclass(frozen=True)
class CheckpointPaths:
    """The files of one checkpoint."""

    weights: Path
    sidecar: Path
    training_state: Path

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> CheckpointPaths:
        """The files of the checkpoint named by its stem or by any of its files."""
        path = Path(path)
        name = path.name
        for suffix in (".train.pt", ".safetensors", ".json"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        stem = path.with_name(name)
        return cls(
            weights=stem.with_name(name + ".safetensors"),
            sidecar=stem.with_name(name + ".json"),
            training_state=stem.with_name(name + ".train.pt"),
        )


MIXTURE_DETECTOR_ROLE = "mixture"
"""The role of a classifier's mixture detector, saved beside it (:func:`companion_stem`)."""


def companion_stem(path: str | os.PathLike[str], role: str) -> Path:
    """The stem of the checkpoint saved beside checkpoint ``path`` for ``role``.

    Checkpoint ``<stem>`` has its companions at ``<stem>-<role>`` (a classifier's mixture
    detector: ``model-mixture.safetensors`` beside ``model.safetensors``), in the same folder,
    so one folder (a run's ``checkpoint/`` artifact) carries both.
    """
    weights = CheckpointPaths.of(path).weights
    return weights.with_name(weights.name[: -len(".safetensors")] + "-" + role)


def load_companion(
    path: str | os.PathLike[str], role: str, device: str | torch.device = "cpu"
) -> nn.Module | None:
    """The ``role`` companion of checkpoint ``path`` (eval mode), or None where there is none."""
    stem = companion_stem(path, role)
    if not CheckpointPaths.of(stem).weights.exists():
        return None
    model, _ = load_checkpoint(stem, device)
    return model


def _plain(value: Any) -> Any:
    """Dataclasses, paths and non-finite floats to strict-JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no nan or inf
    return value


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    train_config: Any = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a model checkpoint (weights and sidecar).

    Args:
        path: the checkpoint's stem or one of its file names; parent folders are created.
        model: a registered model (``model.config`` names the class); a ``torch.compile``
            wrapper is unwrapped.
        train_config: the training config (a dataclass or a dict), stored in the sidecar.
        metadata: extra JSON-ready values (class names, material ids, metrics, run ids).

    Returns:
        The path of the ``.safetensors`` file.
    """
    model = getattr(model, "_orig_mod", model)
    paths = CheckpointPaths.of(path)
    paths.weights.parent.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "format_version": FORMAT_VERSION,
        "model": model_name(model),
        "model_config": config_to_dict(model.config),
        "train_config": _plain(train_config),
        "metadata": _plain(metadata or {}),
        "torch_version": torch.__version__,
    }
    text = json.dumps(sidecar, indent=2, sort_keys=True, allow_nan=False)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for target, write in (
        (paths.weights, lambda tmp: save_file(state, tmp, metadata={HEADER_KEY: text})),
        (paths.sidecar, lambda tmp: tmp.write_text(text + "\n")),
    ):
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        os.replace(tmp, target)
    return paths.weights


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar dict of a checkpoint (from the ``.json`` file, else the safetensors header)."""
    paths = CheckpointPaths.of(path)
    try:
        if paths.sidecar.exists():
            sidecar = json.loads(paths.sidecar.read_text())
        else:
            with safe_open(paths.weights, framework="pt") as handle:
                sidecar = json.loads((handle.metadata() or {})[HEADER_KEY])
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise CheckpointError(
            f"checkpoint {paths.weights} has no readable sidecar ({paths.sidecar.name}) or "
            f"header metadata: {exc}"
        ) from exc
    version = sidecar.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {paths.sidecar} has format_version={version!r}; this xrdpipe reads "
            f"{FORMAT_VERSION}"
        )
    return sidecar


def load_state_dict(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict:
    """The model weights of a checkpoint, as a ``state_dict`` on ``device``."""
    paths = CheckpointPaths.of(path)
    try:
        return load_file(paths.weights, device=str(device))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read weights {paths.weights}: {exc}") from exc


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint was saved from, with its weights, in eval mode.

    Args:
        path: the checkpoint's stem or one of its files.
        device: where to put the weights.

    Returns:
        ``(model, sidecar)``; ``sidecar["metadata"]`` holds what the caller saved (class names,
        material ids, ...), ``sidecar["train_config"]`` the training config as a dict.
    """
    sidecar = read_metadata(path)
    config = config_from_dict(sidecar["model"], sidecar["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(load_state_dict(path, device))
    except RuntimeError as exc:
        raise CheckpointError(f"weights of {path} do not fit {sidecar['model']}: {exc}") from exc
    return model.to(device).eval(), sidecar
