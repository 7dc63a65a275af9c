"""Rendered single-phase profiles inside a pattern store (see ``docs/store.md``).

A subgroup ``profiles/<key>`` per peak shape: dims (material, strain, two_theta), chunked
like the peak data, with its own ``completed`` flags. The key hashes the store's
fingerprint (hence the peak data) and the profile settings, so re-rendering with another
shape writes a new group and never touches the simulated peaks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from xrdpipe.errors import StoreError
from xrdpipe.store.layout import (
    _NUMERIC_COMPRESSORS,
    _STRING_COMPRESSORS,
    StorePath,
    _check_region,
    _url,
    materials_per_chunk,
    open_store,
)

PROFILES_GROUP = "profiles"


def profiles_key(store_fingerprint_value: str, profile_settings: Mapping[str, Any]) -> str:
    """The group name of the profiles rendered with ``profile_settings`` from these peaks."""
    blob = json.dumps(
        {"peaks": store_fingerprint_value, "profile": dict(profile_settings)}, sort_keys=True
    )
    return f"{PROFILES_GROUP}/{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def create_profiles(
    path: StorePath,
    key: str,
    two_theta: np.ndarray,
    profile_settings: Mapping[str, Any],
) -> xr.Dataset:
    """Create (or reopen) the profile group ``key`` of a store, aligned with its materials."""
    url = _url(path)
    try:
        return open_profiles(url, key)
    except StoreError:
        pass
    peaks = open_store(url)
    n_mat, n_strain = peaks.sizes["material"], peaks.sizes["strain"]
    chunk = materials_per_chunk(url)
    n_points = len(two_theta)
    ds = xr.Dataset(
        {
            "profile": (
                ("material", "strain", "two_theta"),
                da.zeros(
                    (n_mat, n_strain, n_points), dtype="f4", chunks=(chunk, n_strain, n_points)
                ),
                {"long_name": "single-phase profile, maximum 1 (0 if quarantined)"},
            ),
            "completed": (
                ("material",),
                da.zeros((n_mat,), dtype=bool, chunks=(chunk,)),
                {"long_name": "true once the material's profiles are written"},
            ),
        },
        coords={
            "two_theta": ("two_theta", np.asarray(two_theta, dtype="f8"), {"units": "degree"}),
            "cod_id": ("material", peaks["cod_id"].values.astype(object)),
            "split": ("strain", peaks["split"].values.astype(object)),
        },
        attrs={
            "store_fingerprint": peaks.attrs["fingerprint"],
            "profile_settings": json.dumps(dict(profile_settings), sort_keys=True),
        },
    )
    encoding = {
        "profile": {
            "chunks": (chunk, n_strain, n_points),
            "compressors": _NUMERIC_COMPRESSORS,
            "_FillValue": None,
        },
        "completed": {"chunks": (chunk,), "compressors": _NUMERIC_COMPRESSORS, "_FillValue": None},
        "cod_id": {"compressors": _STRING_COMPRESSORS},
        "split": {"compressors": _STRING_COMPRESSORS},
    }
    try:
        ds.to_zarr(
            url,
            group=key,
            mode="w-",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=encoding,
        )
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot create profile group {key} in {url}: {exc}") from exc
    return open_profiles(url, key)


def open_profiles(path: StorePath, key: str) -> xr.Dataset:
    """The profile group ``key`` (lazy); :class:`StoreError` if it does not exist."""
    try:
        return xr.open_zarr(_url(path), group=key, zarr_format=3, consolidated=False)
    except (OSError, KeyError, ValueError, FileNotFoundError) as exc:
        raise StoreError(f"no profile group {key!r} in {_url(path)}") from exc


def write_profiles(path: StorePath, key: str, start: int, stop: int, profile: np.ndarray) -> None:
    """Write the profiles of whole materials ``start:stop`` (chunk-aligned), then their flags."""
    url = _url(path)
    _check_region(start, stop, materials_per_chunk(url), open_profiles(url, key).sizes["material"])
    profile = np.asarray(profile, dtype="f4")
    if not np.isfinite(profile).all():
        raise StoreError(f"non-finite values in profile of materials {start}:{stop}")
    region = {"material": slice(start, stop)}
    xr.Dataset({"profile": (("material", "strain", "two_theta"), profile)}).to_zarr(
        url, group=key, region=region, zarr_format=3, consolidated=False
    )
    xr.Dataset({"completed": (("material",), np.ones(stop - start, dtype=bool))}).to_zarr(
        url, group=key, region=region, zarr_format=3, consolidated=False
    )
