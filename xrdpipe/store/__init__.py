"""Pattern stores: the Zarr v3 layout of simulated peak lists (see ``docs/store.md``)."""

from xrdpipe.store.layout import (
    BLOCK_VARIABLES,
    STATUS_OK,
    STATUS_PENDING,
    STATUS_QUARANTINED,
    StorePath,
    completed_materials,
    config_fingerprint,
    create_store,
    load_completed,
    mark_completed,
    materials_per_chunk,
    open_store,
    store_exists,
    store_fingerprint,
    store_identity,
    write_block,
)
from xrdpipe.store.profiles import create_profiles, open_profiles, profiles_key, write_profiles

__all__ = [
    "BLOCK_VARIABLES",
    "STATUS_OK",
    "STATUS_PENDING",
    "STATUS_QUARANTINED",
    "StorePath",
    "completed_materials",
    "create_profiles",
    "open_profiles",
    "profiles_key",
    "write_profiles",
    "config_fingerprint",
    "create_store",
    "load_completed",
    "mark_completed",
    "materials_per_chunk",
    "open_store",
    "store_exists",
    "store_fingerprint",
    "store_identity",
    "write_block",
]
