"""The pipeline's refresh rules: a refresh that finds nothing new does no work.

- fetch: :func:`fetch_is_current`. A ``package`` subset (the CIFs shipped with an installed
  package) cannot gain entries, so its fetch is current while the fetch settings, the
  package's version and the manifest are those the pipeline recorded; COD and mirror
  subsets are asked again on every run (cached CIFs are not downloaded again).
- simulate: :func:`store_is_stale` (made from another manifest or other simulation settings:
  simulate again, replacing it) and :func:`simulation_is_current` (every block and the
  subset's profiles complete: nothing to do).
- train: :func:`training_identity`, everything a trained model depends on; a model is
  trained again only when it changed.

The pipeline keeps what it did, keyed by these identities, in :class:`PipelineRecord`.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.diffraction.peaks import SIMULATOR_VERSION
from xrdpipe.errors import StoreError
from xrdpipe.store import (
    completed_materials,
    config_fingerprint,
    open_profiles,
    profiles_key,
    store_exists,
    store_fingerprint,
)
from xrdpipe.structures.manifest import manifest_sha256

RECORD_FILE = "trained.json"
"""Per subset, under its data folder: what the pipeline last fetched, trained and evaluated."""

FETCH_FIELDS = (
    "source",
    "cod_url",
    "mirror_dir",
    "query",
    "filters",
    "symmetry",
    "candidate_pool",
    "sample_size",
    "stratify_by",
    "seed",
)
"""The fields of a subset that decide its manifest (the rest decide the store)."""

PACKAGE_SOURCE = "crystals"
"""The package whose CIFs a ``package`` subset reads."""


def identity_key(identity: dict[str, Any]) -> str:
    """SHA-256 of an identity as sorted JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class PipelineRecord:
    """What the pipeline did on a subset: ``{step or task: {"identity_key", ...}}`` in JSON.

    Args:
        path: the record file (``<data>/<subset>/trained.json``); a missing or unreadable
            file is an empty record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def get(self, name: str) -> dict[str, Any] | None:
        """The entry of a step (``fetch``, ``evaluation``) or task, if any."""
        return self.entries.get(name)

    def set(self, name: str, entry: dict[str, Any]) -> None:
        """Record an entry and write the file."""
        self.entries[name] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.entries, indent=2))


def fetch_identity(config: SubsetConfig) -> dict[str, Any]:
    """What a subset's manifest depends on: its fetch settings (and a package's version)."""
    dumped = config.model_dump(mode="json")
    identity = {name: dumped[name] for name in FETCH_FIELDS}
    if config.source == "package":
        identity["package"] = f"{PACKAGE_SOURCE} {metadata.version(PACKAGE_SOURCE)}"
    return identity


def fetch_is_current(
    settings: Settings, subset: str, config: SubsetConfig, recorded: dict[str, Any] | None
) -> str | None:
    """Why the fetch of a subset has nothing to do, or ``None`` when it must run.

    Args:
        settings: site settings (the data directory).
        subset: the subset's name.
        config: its resolved config.
        recorded: the pipeline's record of its last fetch
            (``{"identity_key", "manifest_sha256"}``).
    """
    if config.source != "package":
        return None
    manifest = settings.subset_dir(subset) / "manifest.parquet"
    if recorded is None or not manifest.is_file():
        return None
    if recorded.get("identity_key") != identity_key(fetch_identity(config)):
        return None
    if recorded.get("manifest_sha256") != manifest_sha256(manifest):
        return None
    return (
        f"the {config.source} source, its version and the fetch settings are unchanged since "
        "the manifest was written"
    )


def fetch_record(settings: Settings, subset: str, config: SubsetConfig) -> dict[str, Any]:
    """The record of a finished fetch (see :func:`fetch_is_current`)."""
    manifest = settings.subset_dir(subset) / "manifest.parquet"
    return {
        "identity_key": identity_key(fetch_identity(config)),
        "manifest_sha256": manifest_sha256(manifest),
    }


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


def simulation_is_current(settings: Settings, subset: str, config: SubsetConfig) -> str | None:
    """Why the simulate stage of a subset has nothing to do, or ``None`` when it must run.

    Current: the store was made from this manifest and these simulation settings, every
    material is completed, and the profiles of the subset's peak shape are rendered.
    """
    from xrdpipe.patterns.datasets import profile_settings

    store = settings.store_path(subset)
    manifest = settings.subset_dir(subset) / "manifest.parquet"
    if not (store_exists(store) and manifest.is_file()) or store_is_stale(settings, subset, config):
        return None
    if not completed_materials(store).all():
        return None
    key = profiles_key(store_fingerprint(store), profile_settings(config.profile))
    try:
        rendered = bool(open_profiles(store, key)["completed"].values.all())
    except StoreError:
        return None
    if not rendered:
        return None
    return "the store is complete, from this manifest and these settings, with its profiles"
