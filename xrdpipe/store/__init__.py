"""Pattern stores: the Zarr v3 layout of simulated peak lists (see ``docs/store.md``)."""

from xrdpipe.store.patterns import (
    BLOCK_VARIABLES,
    STATUS_OK,
    STATUS_PENDING,
    STATUS_QUARANTINED,
    completed_materials,
    config_fingerprint,
    create_store,
    load_completed,
    mark_completed,
    materials_per_chunk,
    open_store,
    store_exists,
    store_fingerprint,
    write_block,
)

__all__ = [
    "BLOCK_VARIABLES",
    "STATUS_OK",
    "STATUS_PENDING",
    "STATUS_QUARANTINED",
    "completed_materials",
    "config_fingerprint",
    "create_store",
    "load_completed",
    "mark_completed",
    "materials_per_chunk",
    "open_store",
    "store_exists",
    "store_fingerprint",
    "write_block",
]
