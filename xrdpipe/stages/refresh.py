"""The pipeline's refresh rules: when to simulate a store again, what a model depends on.

:func:`store_is_stale` says a store was made from another manifest or other simulation
settings; :func:`training_identity` is everything a trained model depends on, so a model is
trained again only when it changed.
"""

from __future__ import annotations

from typing import Any

from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.diffraction.peaks import SIMULATOR_VERSION
from xrdpipe.store import config_fingerprint, store_exists, store_fingerprint
from xrdpipe.structures.manifest import manifest_sha256


def training_identity(
    settings: Settings,
    subset: str,
    config: SubsetConfig,
    task: str,
    preset: dict[str, Any],
    arguments: dict[str, Any],
) -> dict[str, Any]:
    """Everything a trained model depends on.

    The store's fingerprint (manifest sha256, simulation settings, simulator version), the
    whole subset config (profiles), the preset, the task's arguments and the tracking store.
    """
    store = settings.store_path(subset)
    return {
        "task": task,
        "subset": subset,
        "store_fingerprint": store_fingerprint(store),
        "subset_config": config.fingerprint(),
        "preset": preset,
        "arguments": arguments,
        "tracking_uri": settings.tracking_uri(),
    }


def store_is_stale(settings: Settings, subset: str, config: SubsetConfig) -> bool:
    """The store exists but was made from another manifest or other simulation settings."""
    folder = settings.subset_dir(subset)
    store = settings.store_path(subset)
    manifest = folder / "manifest.parquet"
    if not (store_exists(store) and manifest.is_file()):
        return False
    wanted = config_fingerprint(config, SIMULATOR_VERSION, manifest_sha256(manifest))
    return store_fingerprint(store) != wanted
