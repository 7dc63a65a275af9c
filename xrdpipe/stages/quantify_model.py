"""The model of ``xrdpipe quantify``: an ensemble of phase-fraction CNNs for one phase set.

Key: :func:`model_fingerprint`, the pipeline's :func:`~xrdpipe.stages.refresh.training_identity`
of the phase set's store (manifest SHA-256, simulation settings, simulator version), the whole
subset config (the instrument's profile), the preset (its name and every value), the
mixtures' K and the members' seeds, without the tracking URI. The ensemble is registered in
MLflow as ``xrdpipe-quantify-<phase set>`` with that key as the version tag ``fingerprint``;
:func:`ensure_model` loads the newest version with the key, else trains
(:mod:`xrdpipe.stages.quantify_ensemble`) and registers a new one.

On disk (the registered ``ensemble`` artifact): ``member-s<seed>.pt`` per member (the
network's ``state_dict``, read back with ``torch.load(weights_only=True)``) and
:data:`MODEL_FILE` (the training config, the model config, the phases, the detection limits,
the key).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.errors import XrdpipeError
from xrdpipe.readers import ModelGrid
from xrdpipe.stages.predict import Member, ModelEnsemble
from xrdpipe.stages.predict import _grid as model_grid

MODEL_FILE = "quantify_model.json"
"""The ensemble's description beside its member checkpoints."""
DEFAULT_MEMBERS = 3
"""Ensemble members (seeds ``0 .. M-1``) unless told otherwise."""
DEFAULT_MAX_PHASES = 3
"""K of the training mixtures (capped at the number of phases)."""

Log = Callable[[str], None]


@dataclass
class QuantifyModel:
    """A loaded ensemble for one phase set.

    Attributes:
        name: the registered model.
        version: its version.
        fingerprint: the key it was registered under.
        phase_set: the phase set's name (its subset).
        materials: the phase ids, in output order.
        names: the phase names (file stems), in output order.
        formulas: their formulas.
        detection_limits: weight fraction (0-1) per phase name (module
            :mod:`xrdpipe.stages.quantify_ensemble`, rule in ``docs/quantify.md``).
        ensemble: the members, through :class:`~xrdpipe.stages.predict.ModelEnsemble`
            (its grid and its mean/std prediction).
        config: the first member's training configuration.
        trained: ``True`` when this call trained it, ``False`` when it was reused.
        notes: what was decided.
    """

    name: str
    version: str
    fingerprint: str
    phase_set: str
    materials: list[str]
    names: list[str]
    formulas: list[str]
    detection_limits: dict[str, float]
    ensemble: ModelEnsemble
    config: dict[str, Any]
    trained: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def grid(self) -> ModelGrid:
        """The input grid and wavelength of every member."""
        return self.ensemble.grid

    @property
    def subset(self) -> SubsetConfig:
        """The phase set's subset config the members were trained on."""
        return SubsetConfig.model_validate(self.config["subset"])

    @property
    def members(self) -> int:
        """How many members."""
        return len(self.ensemble.members)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (population std over members) of the weight fractions of ``x``."""
        return self.ensemble.predict(x)


def model_fingerprint(
    settings: Settings,
    phase_set: str,
    subset: SubsetConfig,
    preset_name: str,
    preset: dict[str, Any],
    max_phases: int,
    seeds: Sequence[int],
) -> str:
    """The model's key (module docstring); the phase set's store must exist."""
    from xrdpipe.stages.refresh import identity_key, training_identity

    identity = training_identity(
        settings,
        phase_set,
        subset,
        "quantify",
        preset,
        {"preset_name": preset_name, "max_phases": max_phases, "seeds": list(seeds)},
    )
    identity.pop("tracking_uri")
    return identity_key(identity)


def save_ensemble(
    folder: Path,
    states: Sequence[tuple[int, dict[str, Any]]],
    description: dict[str, Any],
) -> Path:
    """Write each member's ``state_dict`` and :data:`MODEL_FILE` into ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for seed, state in states:
        torch.save(state, folder / f"member-s{seed}.pt")
    (folder / MODEL_FILE).write_text(json.dumps(description, indent=2, default=str))
    return folder


def load_ensemble(folder: Path, name: str, version: str, *, trained: bool) -> QuantifyModel:
    """A :class:`QuantifyModel` from a folder written by :func:`save_ensemble`.

    Raises:
        XrdpipeError: a member's checkpoint is missing.
    """
    import torch

    from xrdpipe.models import PhaseCNN, config_from_dict

    description = json.loads((folder / MODEL_FILE).read_text())
    config = description["config"]
    members = []
    for seed in description["seeds"]:
        path = folder / f"member-s{seed}.pt"
        if not path.is_file():
            raise XrdpipeError(f"ensemble {name} v{version} lacks member {path.name}")
        network = PhaseCNN(config_from_dict("phase_cnn", description["model_config"]))
        network.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        network.eval()
        members.append(Member(str(seed), str(seed), network.predict, network))
    names = list(description["names"])
    ensemble = ModelEnsemble(
        name=name,
        kind="phase-fractions",
        task="phase-fractions",
        chosen=version,
        how=f"version {version}",
        labels=list(description["materials"]),
        formulas=list(description["formulas"]),
        names=names,
        grid=model_grid(config),
        members=members,
        config=config,
    )
    return QuantifyModel(
        name=name,
        version=version,
        fingerprint=description["fingerprint"],
        phase_set=description["phase_set"],
        materials=list(description["materials"]),
        names=names,
        formulas=list(description["formulas"]),
        detection_limits={k: float(v) for k, v in description["detection_limits"].items()},
        ensemble=ensemble,
        config=config,
        trained=trained,
    )


def ensure_model(
    settings: Settings,
    phase_set: str,
    subset: SubsetConfig,
    preset_name: str,
    preset: Any,
    *,
    members: int = DEFAULT_MEMBERS,
    max_phases: int = DEFAULT_MAX_PHASES,
    log: Log = print,
) -> QuantifyModel:
    """The registered ensemble of this key, or a new one trained, registered and loaded.

    Call :func:`xrdpipe.tracking.configure` first; the phase set's store must be simulated.

    Args:
        settings: site settings (Dask workers, data directory).
        phase_set: the phase set's subset name.
        subset: its config.
        preset_name: the phase-fraction preset's name.
        preset: the preset (:class:`~xrdpipe.config.PhaseFractionPreset`).
        members: ensemble members (seeds ``0 .. members-1``).
        max_phases: K of the training mixtures (capped at the number of phases).
        log: progress lines.
    """
    from xrdpipe.stages.quantify_ensemble import train_ensemble
    from xrdpipe.tracking import quantify_models as registry

    if members < 1:
        raise XrdpipeError(f"members {members!r} must be at least 1")
    seeds = list(range(members))
    dump = preset.model_dump(mode="json")
    key = model_fingerprint(settings, phase_set, subset, preset_name, dump, max_phases, seeds)
    name = registry.quantify_model_name(phase_set)
    found = registry.find_ensemble_version(name, key)
    with tempfile.TemporaryDirectory() as tmp:
        if found is not None:
            version, run_id = found
            log(f"model: reusing {name} version {version} (fingerprint {key[:12]})")
            folder = registry.download_ensemble(run_id, Path(tmp))
            return load_ensemble(folder, name, version, trained=False)
        log(f"model: no {name} with fingerprint {key[:12]}: training {members} member(s)")
        folder = Path(tmp) / "ensemble"
        version = train_ensemble(
            settings,
            phase_set,
            subset,
            preset_name,
            preset,
            seeds=seeds,
            max_phases=max_phases,
            fingerprint=key,
            registered_name=name,
            folder=folder,
            log=log,
        )
        return load_ensemble(folder, name, version, trained=True)
