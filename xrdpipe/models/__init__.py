"""Models of the two papers: the a-CNN classifier (000) and the phase-fraction CNN (002).

Beside them, a 1D ResNet classifier (:mod:`xrdpipe.models.resnet1d`, a departure from
paper 000 after Schopmans et al. 2023) for crystal systems and space groups learnt from
synthetic crystals.

Every model keeps its frozen config dataclass in ``model.config``; :func:`build_model` and
:func:`config_from_dict` rebuild a model from a config's plain-dict form, which is what a
checkpoint stores (see :mod:`xrdpipe.models.checkpoints`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from xrdpipe.errors import ConfigError
from xrdpipe.models.acnn import ACNN, ACNNConfig, class_activation_maps
from xrdpipe.models.phase_cnn import PhaseCNN, PhaseCNNConfig
from xrdpipe.models.resnet1d import ResNet1D, ResNet1DConfig

ModelConfig = ACNNConfig | PhaseCNNConfig | ResNet1DConfig

MODELS: dict[str, tuple[type[nn.Module], type[Any]]] = {
    "acnn": (ACNN, ACNNConfig),
    "phase_cnn": (PhaseCNN, PhaseCNNConfig),
    "resnet1d": (ResNet1D, ResNet1DConfig),
}
"""Model name -> (model class, config class); the name is what checkpoints record."""


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_name(model_or_config: nn.Module | ModelConfig) -> str:
    """The registry name (``"acnn"``, ``"phase_cnn"``, ``"resnet1d"``) of a model or config."""
    config = getattr(model_or_config, "config", model_or_config)
    for name, (_, config_class) in MODELS.items():
        if isinstance(config, config_class):
            return name
    raise ConfigError(f"{type(model_or_config)=} is not a registered model; known: {list(MODELS)}")


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """A JSON-ready dict of a model config (tuples become lists)."""
    return dataclasses.asdict(config)


def config_from_dict(name: str, values: dict[str, Any]) -> ModelConfig:
    """Rebuild the config of model ``name`` from :func:`config_to_dict`'s output."""
    if name not in MODELS:
        raise ConfigError(f"model {name=} is not registered; known: {list(MODELS)}")
    config_class = MODELS[name][1]
    allowed = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError(
            f"{config_class.__name__} has no fields {unknown}; allowed: {sorted(allowed)}"
        )
    return config_class(**values)


def build_model(config: ModelConfig) -> nn.Module:
    """The model class that belongs to ``config``, freshly initialised."""
    return MODELS[model_name(config)][0](config)


__all__ = [
    "ACNN",
    "ACNNConfig",
    "MODELS",
    "ModelConfig",
    "PhaseCNN",
    "PhaseCNNConfig",
    "ResNet1D",
    "ResNet1DConfig",
    "build_model",
    "class_activation_maps",
    "config_from_dict",
    "config_to_dict",
    "count_parameters",
    "model_name",
]
