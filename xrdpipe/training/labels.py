"""Classifier targets and their labels: which classes a material belongs to, in which order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from xrdpipe.config import CRYSTAL_SYSTEMS, LATTICE_SYSTEMS
from xrdpipe.errors import ConfigError, XrdpipeError

CLASSIFIER_TARGETS: dict[str, str] = {
    "lattice-system": "lattice_system",
    "crystal-system": "crystal_system",
    "space-group": "space_group",
    "dimensionality": "dimensionality",
}
"""Classifier task -> target of :func:`~xrdpipe.training.classifier.train_classifier`."""

Target = Literal["lattice_system", "crystal_system", "space_group", "dimensionality"]


class TaskError(XrdpipeError):
    """A training task cannot run on this store (wrong strain mode, too few materials...)."""


def labels(materials: pd.DataFrame, target: Target, manifest_path: Path | None) -> pd.Series:
    """The target label of every material, as strings."""
    if target in ("lattice_system", "crystal_system"):
        return materials[target].astype(str)
    if target == "space_group":
        return materials["space_group_number"].astype(int).astype(str)
    if target == "dimensionality":
        if manifest_path is None or not Path(manifest_path).is_file():
            raise TaskError(f"dimensionality labels need the manifest; none at {manifest_path}")
        manifest = pd.read_parquet(manifest_path, columns=["cod_id", "dimensionality"])
        manifest["cod_id"] = manifest["cod_id"].astype(str)
        dims = manifest.set_index("cod_id")["dimensionality"]
        ids = materials["cod_id"].astype(str)
        missing = [i for i in ids if i not in dims.index or pd.isna(dims.get(i))]
        if missing:
            raise TaskError(f"materials {missing[:5]} have no dimensionality in {manifest_path}")
        return pd.Series([f"{int(dims[i])}D" for i in ids], index=materials.index)
    raise ConfigError(f"target {target!r} is not one of {list(CLASSIFIER_TARGETS.values())}")


def class_order(target: str, present: Sequence[str]) -> list[str]:
    """The classes of ``target`` found in ``present``, in the field's canonical order."""
    canonical = {"lattice_system": LATTICE_SYSTEMS, "crystal_system": CRYSTAL_SYSTEMS}
    if target in canonical:
        return [c for c in canonical[target] if c in set(present)]
    if target == "space_group":
        return sorted(set(present), key=int)
    return sorted(set(present))
