"""One entry point to a trained classifier: prepare a scan as training did, then logits.

:class:`ClassifierPredictor` is built from a checkpoint (:meth:`ClassifierPredictor.load`,
:mod:`xrdpipe.models.checkpoints`) and is what ``xrdpipe predict`` and the evaluation on real
structures use:

- :meth:`~ClassifierPredictor.prepare` puts a measured (or simulated) pattern on the model's
  own two-theta grid and normalises it exactly as the training inputs were
  (:func:`xrdpipe.readers.prepare_pattern`: Bragg conversion of the wavelength, linear
  interpolation, min-max to [0, 1]); a rolling-minimum background is subtracted only for
  models trained on clean, background-free profiles (paper 000's a-CNN); measured-like
  models saw backgrounds in training and get the scan as measured;
- :meth:`~ClassifierPredictor.logits` runs the network on prepared profiles.

A checkpoint of measured-like training (:mod:`xrdpipe.training.measured_like`) carries its
``preprocess`` block (grid, wavelength, doublet, normalisation); one of stored-profile
training carries none, and the grid comes from its training config's subset profile (as
``xrdpipe predict`` has always read it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xrdpipe.readers import ModelGrid, PreparedPattern, prepare_pattern
from xrdpipe.readers.base import MeasuredPattern

BATCH = 512
"""Profiles per forward pass."""


def grid_of(config: dict[str, Any], metadata: dict[str, Any] | None = None) -> ModelGrid:
    """The input grid of a classifier from its checkpoint metadata or training config.

    ``metadata["preprocess"]`` (or ``config["preprocess"]``) wins; else the training
    subset's profile and simulation wavelength (stored-profile training).
    """
    pre = (metadata or {}).get("preprocess") or config.get("preprocess")
    if pre:
        return ModelGrid(
            float(pre["two_theta_min"]),
            float(pre["two_theta_max"]),
            int(pre["n_points"]),
            float(pre["wavelength"]),
            bool(pre["ka_doublet"]),
        )
    from xrdpipe.config import SimulationConfig
    from xrdpipe.patterns.config import ProfileConfig

    subset = config.get("subset") or {}
    profile = ProfileConfig.model_validate(subset.get("profile") or {})
    simulation = SimulationConfig.model_validate(subset.get("simulation") or {})
    return ModelGrid(
        profile.two_theta_min,
        profile.two_theta_max,
        profile.n_points,
        profile.ka1 if profile.ka_doublet else simulation.wavelength_angstrom,
        profile.ka_doublet,
    )


def subtracts_background(config: dict[str, Any], metadata: dict[str, Any] | None = None) -> bool:
    """Whether scans are background-subtracted for this model (clean-profile training only)."""
    pre = (metadata or {}).get("preprocess") or config.get("preprocess")
    return True if not pre else bool(pre.get("background_subtraction", False))


@dataclass
class ClassifierPredictor:
    """A trained classifier with the preprocessing of its training.

    Attributes:
        model: the network (logits out), in eval mode.
        classes: class names in output order.
        target: ``lattice_system``, ``crystal_system``, ``space_group``...
        grid: the model's input grid and wavelength.
        background: subtract a rolling-minimum background in :meth:`prepare`.
        metadata: the checkpoint's metadata (``preprocess``, variant, ...).
        device: where the network runs.
        detector: the mixture detector saved beside the checkpoint (the one-phase flag's
            ``mixture`` test; :mod:`xrdpipe.training.mixture_detector`), or None.
    """

    model: nn.Module
    classes: list[str]
    target: str
    grid: ModelGrid
    background: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    detector: nn.Module | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        device: str | torch.device = "cpu",
        config: dict[str, Any] | None = None,
    ) -> ClassifierPredictor:
        """A predictor from a checkpoint (its stem or any of its files).

        Args:
            path: the checkpoint.
            device: where the network runs.
            config: the run's training config (MLflow's ``config.yaml``); needed only for a
                stored-profile classifier whose checkpoint holds no subset (else its grid is
                the default subset profile's, 10-80 deg in 4,501 points at Cu K-alpha).

        Raises:
            xrdpipe.models.checkpoints.CheckpointError: unreadable, or not a classifier.
        """
        from xrdpipe.models.checkpoints import CheckpointError, load_checkpoint
        from xrdpipe.training.mixture_detector import load_detector

        model, sidecar = load_checkpoint(path, device)
        metadata = sidecar.get("metadata") or {}
        if config is None:
            config = sidecar.get("train_config") or {}
        if not isinstance(config, dict):
            config = {}
        classes = [str(c) for c in metadata.get("class_names") or []]
        if not classes:
            raise CheckpointError(f"checkpoint {path} has no class_names: not a classifier")
        target = str(metadata.get("task") or (config.get("data") or {}).get("target") or "")
        return cls(
            model=model,
            classes=classes,
            target=target.replace("-", "_"),
            grid=grid_of(config, metadata),
            background=subtracts_background(config, metadata),
            metadata=metadata,
            device=torch.device(device),
            detector=load_detector(path, device),
        )

    def prepare_full(
        self, pattern: MeasuredPattern, allow_partial: bool = False
    ) -> PreparedPattern:
        """:meth:`prepare` with what was done (coverage, wavelengths, notes)."""
        return prepare_pattern(
            pattern, self.grid, background=self.background, allow_partial=allow_partial
        )

    def prepare(self, pattern: MeasuredPattern, allow_partial: bool = False) -> np.ndarray:
        """The pattern on the model's grid, normalised as in training: ``(n_points,)`` float32."""
        return self.prepare_full(pattern, allow_partial).x

    @torch.no_grad()
    def logits(self, profiles: np.ndarray) -> np.ndarray:
        """Logits ``(B, n_classes)`` of prepared profiles ``(B, n_points)`` (or one profile)."""
        x = np.asarray(profiles, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.shape[1] != self.grid.n_points:
            raise ValueError(
                f"profiles have {x.shape[1]} points; the model's grid has {self.grid.n_points} "
                "(prepare them with .prepare)"
            )
        self.model.eval()
        out = []
        for start in range(0, len(x), BATCH):
            batch = torch.from_numpy(x[start : start + BATCH]).to(self.device)
            out.append(self.model(batch).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def probabilities(self, profiles: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`logits` (uncalibrated)."""
        z = self.logits(profiles)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


__all__ = ["ClassifierPredictor", "grid_of", "subtracts_background"]
