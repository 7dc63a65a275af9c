"""The pattern store: simulated peak lists of one subset in one Zarr v3 store (via xarray).

This is the only module that knows the layout (see ``docs/store.md``). Simulation writes
through :func:`write_block` and :func:`mark_completed`; readers open it with
:func:`open_store` or, trusting only finished materials, :func:`load_completed`.

Layout, one store per subset at ``<data_dir>/<subset>/patterns.zarr`` (any fsspec URL):

1. Dimensions ``material`` (manifest rows, in manifest order), ``strain`` (``n_train``
   training conditions, then ``n_test`` test conditions, then one unstrained
   ``reference``), ``peak`` (padded reflections), ``vec3`` (h, k, l) and ``i``, ``j``
   (strain tensor indices).
2. Every variable with a ``material`` dimension is chunked by ``materials_per_chunk``
   materials and whole ``strain``, ``peak`` and small axes (no sharding), so one block of
   whole chunks is one Dask task's private region: parallel writers never share a chunk.
3. The store is created first with metadata, coordinates and per-material status only
   (``to_zarr(compute=False)`` over dask-backed zeros); blocks are then written as regions
   (``to_zarr(region=...)``) and, after each block's data, its ``completed`` flags.
   A block whose flags are unset is incomplete, whatever its data chunks hold.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from xrdpipe.config.simulation import SimulatedSubset
from xrdpipe.errors import StoreError

StorePath = str | os.PathLike[str]
"""A local path or an fsspec URL (``s3://...``, ``memory://...``) of a Zarr store."""

LAYOUT_VERSION = 2
"""Bumped whenever the layout below changes incompatibly."""

STATUS_PENDING = "pending"
STATUS_OK = "ok"
STATUS_QUARANTINED = "quarantined"
STATUSES = (STATUS_PENDING, STATUS_OK, STATUS_QUARANTINED)
"""Values of the ``status`` variable; ``pending`` only until the material's block is written."""

MATERIAL_COORDS = (
    "cod_id",
    "formula",
    "space_group_number",
    "space_group_symbol",
    "crystal_system",
    "lattice_system",
)
"""Manifest columns copied as coordinates along ``material``."""
OPTIONAL_MATERIAL_COORDS = ("phase_name",)
"""Manifest columns copied as coordinates when the manifest has them (a phase set's names)."""

_PEAK_DIMS = ("material", "strain", "peak")
_STRAIN_DIMS = ("material", "strain")

VARIABLES: dict[str, tuple[tuple[str, ...], str, dict[str, str]]] = {
    "two_theta": (_PEAK_DIMS, "f8", {"units": "degree", "long_name": "peak position 2theta"}),
    "intensity": (_PEAK_DIMS, "f8", {"long_name": "peak intensity, strongest peak = 100"}),
    "intensity_raw": (_PEAK_DIMS, "f8", {"long_name": "unscaled peak intensity"}),
    "d_spacing": (_PEAK_DIMS, "f8", {"units": "angstrom", "long_name": "interplanar spacing"}),
    "multiplicity": (_PEAK_DIMS, "i4", {"long_name": "number of merged reflections"}),
    "hkl": ((*_PEAK_DIMS, "vec3"), "i4", {"long_name": "Miller indices of the peak"}),
    "peak_mask": (_PEAK_DIMS, "bool", {"long_name": "true where the peak slot holds a peak"}),
    "n_peaks": (_STRAIN_DIMS, "i4", {"long_name": "number of peaks in the pattern"}),
    "volume": (_STRAIN_DIMS, "f8", {"units": "angstrom^3", "long_name": "cell volume"}),
    "density": (_STRAIN_DIMS, "f8", {"units": "g/cm^3", "long_name": "density"}),
    "strain_tensor": (
        ("material", "strain", "i", "j"),
        "f8",
        {"long_name": "applied strain tensor (Green-Lagrange convention of the simulator)"},
    ),
    "status": (
        ("material",),
        "str",
        {"long_name": "simulation status", "flag_meanings": " ".join(STATUSES)},
    ),
    "quarantine_reason": (
        ("material",),
        "str",
        {"long_name": "why the material was quarantined at simulate time ('' if ok)"},
    ),
}
"""Every variable a block write carries: (dims, dtype, attrs). ``strain_tensor`` is a coord."""

BLOCK_VARIABLES = tuple(VARIABLES)
"""The names :func:`write_block` requires, no more, no fewer."""

COORD_VARIABLES = ("strain_tensor",)
"""Block variables stored as coordinates rather than data variables."""

_STRING_VARIABLES = ("status", "quarantine_reason")

IDENTITY_ATTRS = (
    "fingerprint",
    "wavelength",
    "wavelength_name",
    "two_theta_min",
    "two_theta_max",
    "strain_mode",
    "max_strain",
    "n_train",
    "n_test",
    "materials_per_chunk",
    "seed",
    "simulator_version",
    "manifest_sha256",
    "n_materials",
    "n_peaks",
    "layout_version",
)
"""Attributes compared when a store is reopened; any difference refuses the store."""

PEAKS_PER_CHUNK = 128
"""Chunk length along ``peak``. A block writes only the peak chunks its longest list
reaches; the rest stay absent and read as the fill value (0, mask false), so a loose
``n_peaks`` bound costs neither memory nor time."""

_NUMERIC_COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)
"""lz4 over byte-shuffled values: ~50x faster than zstd-5 on peak tables (1.9 GB/s vs
35 MB/s measured), for ~15 % more bytes; zstd made writing most of a simulate task."""
_STRING_COMPRESSORS = (ZstdCodec(level=3),)


def _xrdpipe_version() -> str:
    try:
        return metadata.version("xrdpipe")
    except metadata.PackageNotFoundError:
        return "unknown"


def _url(path: StorePath) -> str:
    """The store's location for zarr.

    ``file://`` URLs become plain paths (zarr's local store creates the chunk folders;
    fsspec's local filesystem would not); other fsspec URLs (``s3://``, ``gs://``...) pass.
    """
    url = os.fspath(path)
    return url[len("file://") :] if url.startswith("file://") else url


def config_fingerprint(
    subset_config: SimulatedSubset, simulator_version: str, manifest_sha256: str
) -> str:
    """A hash of everything that changes the simulated numbers.

    Args:
        subset_config: the subset; its ``simulation``, ``symmetry`` and ``seed`` count
            (not its description, source or filters: those act through the manifest).
        simulator_version: ``xrdpipe.diffraction.peaks.SIMULATOR_VERSION``.
        manifest_sha256: hash of the manifest the store was simulated from.

    Returns:
        16 hex digits.
    """
    blob = json.dumps(
        {
            "simulation": subset_config.simulation.model_dump(mode="json"),
            "symmetry": subset_config.symmetry.model_dump(mode="json"),
            "seed": subset_config.seed,
            "simulator_version": str(simulator_version),
            "manifest_sha256": str(manifest_sha256),
            "layout_version": LAYOUT_VERSION,
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def store_attrs(
    subset_config: SimulatedSubset,
    *,
    n_materials: int,
    n_peaks: int,
    simulator_version: str,
    manifest_sha256: str,
) -> dict[str, Any]:
    """The attributes a store made from this configuration carries (without ``created_at``).

    Args:
        subset_config: the subset.
        n_materials: rows of the manifest.
        n_peaks: length of the ``peak`` axis.
        simulator_version: the simulator's version string.
        manifest_sha256: hash of the manifest.

    Returns:
        A JSON-serialisable dict.
    """
    sim = subset_config.simulation
    return {
        "fingerprint": config_fingerprint(subset_config, simulator_version, manifest_sha256),
        "wavelength": sim.wavelength_angstrom,
        "wavelength_units": "angstrom",
        "wavelength_name": sim.wavelength if isinstance(sim.wavelength, str) else "custom",
        "two_theta_min": float(sim.two_theta_range[0]),
        "two_theta_max": float(sim.two_theta_range[1]),
        "strain_mode": sim.strain_mode,
        "max_strain": float(sim.max_strain),
        "n_train": int(sim.n_train_strains),
        "n_test": int(sim.n_test_strains),
        "materials_per_chunk": int(sim.materials_per_chunk),
        "seed": int(subset_config.seed),
        "simulator_version": str(simulator_version),
        "manifest_sha256": str(manifest_sha256),
        "n_materials": int(n_materials),
        "n_peaks": int(n_peaks),
        "layout_version": LAYOUT_VERSION,
        "peaks_per_chunk": PEAKS_PER_CHUNK,
        "catalog_entry": subset_config.model_dump_json(),
        "xrdpipe_version": _xrdpipe_version(),
    }


def store_exists(path: StorePath) -> bool:
    """Whether a Zarr group exists at ``path``."""
    try:
        zarr.open_group(_url(path), mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return False
    return True


def _split_labels(n_train: int, n_test: int) -> np.ndarray:
    return np.array(["train"] * n_train + ["test"] * n_test + ["reference"], dtype=object)


def _material_coords(materials: pd.DataFrame) -> dict[str, tuple[str, np.ndarray]]:
    missing = [c for c in MATERIAL_COORDS if c not in materials.columns]
    if missing:
        raise StoreError(
            f"manifest lacks columns {missing} needed as store coordinates; "
            f"required: {list(MATERIAL_COORDS)}"
        )
    coords: dict[str, tuple[str, np.ndarray]] = {}
    present = [c for c in OPTIONAL_MATERIAL_COORDS if c in materials.columns]
    for name in (*MATERIAL_COORDS, *present):
        column = materials[name]
        if name == "space_group_number":
            values = column.to_numpy(dtype="i4")
        else:
            values = np.array([str(v) for v in column], dtype=object)
        coords[name] = ("material", values)
    return coords


def _describe_mismatch(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    return [
        f"{key}: store has {existing.get(key)!r}, requested {wanted.get(key)!r}"
        for key in IDENTITY_ATTRS
        if existing.get(key) != wanted.get(key)
    ]


def create_store(
    path: StorePath,
    materials: pd.DataFrame,
    n_peaks: int,
    subset_config: SimulatedSubset,
    *,
    simulator_version: str,
    manifest_sha256: str,
    overwrite: bool = False,
) -> xr.Dataset:
    """Create the store lazily, or reopen an existing one made with the same configuration.

    Only metadata, coordinates and the per-material ``status`` (``pending``) are written:
    the data variables are dask-backed zeros (one dask chunk each) written with
    ``compute=False``, so their chunks stay absent until :func:`write_block` fills them.

    Args:
        path: local path or fsspec URL of the store.
        materials: the manifest (rows in manifest order), with the columns of
            :data:`MATERIAL_COORDS`.
        n_peaks: length of the ``peak`` axis (the largest reflection bound of any material).
        subset_config: the subset; gives the simulation settings and the catalog entry.
        simulator_version: the simulator's version string.
        manifest_sha256: hash of the manifest.
        overwrite: replace a store made with another configuration (or a partial one).

    Returns:
        The store, opened lazily.

    Raises:
        StoreError: a store exists at ``path`` with other identity attributes and
            ``overwrite`` is false (the message lists every difference).
    """
    n_materials = len(materials)
    if n_materials == 0:
        raise StoreError("cannot create a pattern store for an empty manifest (0 materials)")
    if n_peaks < 1:
        raise StoreError(f"n_peaks={n_peaks!r} must be >= 1")
    attrs = store_attrs(
        subset_config,
        n_materials=n_materials,
        n_peaks=n_peaks,
        simulator_version=simulator_version,
        manifest_sha256=manifest_sha256,
    )
    if store_exists(path) and not overwrite:
        existing = open_store(path)
        problems = _describe_mismatch(existing.attrs, attrs)
        if problems:
            raise StoreError(
                f"pattern store {_url(path)} was made with another configuration: "
                + "; ".join(problems)
                + ". Pass overwrite=True (CLI: --overwrite) to replace it, "
                "or choose another store path."
            )
        return existing

    sim = subset_config.simulation
    chunk = sim.materials_per_chunk
    n_strain = sim.n_train_strains + sim.n_test_strains + 1
    sizes = {
        "material": n_materials,
        "strain": n_strain,
        "peak": n_peaks,
        "vec3": 3,
        "i": 3,
        "j": 3,
    }
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = dict(_material_coords(materials))
    coords["split"] = ("strain", _split_labels(sim.n_train_strains, sim.n_test_strains))
    encoding: dict[str, dict[str, Any]] = {}
    for name, (dims, dtype, var_attrs) in VARIABLES.items():
        shape = tuple(sizes[d] for d in dims)
        chunks = tuple(
            chunk if d == "material" else min(PEAKS_PER_CHUNK, n) if d == "peak" else n
            for d, n in zip(dims, shape, strict=True)
        )
        if name in _STRING_VARIABLES:
            fill = STATUS_PENDING if name == "status" else ""
            values: Any = np.full(shape, fill, dtype=object)
            encoding[name] = {"chunks": chunks, "compressors": _STRING_COMPRESSORS}
        else:
            # One dask chunk per variable: only the metadata is written (compute=False),
            # and a graph of one task per Zarr chunk cost seconds to build and discard.
            values = da.zeros(shape, dtype=dtype, chunks=-1)
            encoding[name] = {
                "chunks": chunks,
                "compressors": _NUMERIC_COMPRESSORS,
                "_FillValue": None,
            }
            if "peak" in dims:  # unwritten peak chunks read as empty slots, not NaN
                encoding[name]["fill_value"] = False if dtype == "bool" else 0
        variable = (dims, values, var_attrs)
        if name in COORD_VARIABLES:
            coords[name] = variable
        else:
            data_vars[name] = variable
    data_vars["completed"] = (
        ("material",),
        da.zeros((n_materials,), dtype=bool, chunks=-1),
        {"long_name": "true once the material's block is written (readers trust only these)"},
    )
    encoding["completed"] = {
        "chunks": (chunk,),
        "compressors": _NUMERIC_COMPRESSORS,
        "_FillValue": None,
    }
    for name in (*MATERIAL_COORDS, *OPTIONAL_MATERIAL_COORDS, "split"):
        if name not in coords:
            continue
        numeric = name == "space_group_number"
        encoding[name] = {"compressors": _NUMERIC_COMPRESSORS if numeric else _STRING_COMPRESSORS}
    attrs["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    try:
        ds.to_zarr(
            _url(path),
            mode="w" if overwrite else "w-",
            compute=False,
            zarr_format=3,
            consolidated=False,
            encoding=encoding,
        )
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot create pattern store {_url(path)}: {exc}") from exc
    return open_store(path)


def open_store(path: StorePath) -> xr.Dataset:
    """Open a store lazily (dask-backed), every material included.

    Args:
        path: local path or fsspec URL.

    Returns:
        The dataset; check ``completed`` (or use :func:`load_completed`) before trusting
        a material's values.

    Raises:
        StoreError: no store at ``path``.
    """
    try:
        return xr.open_zarr(_url(path), consolidated=False, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
        raise StoreError(
            f"no pattern store at {_url(path)}: run the simulation first ({exc})"
        ) from exc


def store_fingerprint(path: StorePath) -> str:
    """The configuration fingerprint a store was made with (see :func:`config_fingerprint`)."""
    return str(open_store(path).attrs["fingerprint"])


def store_identity(path: StorePath) -> dict[str, Any]:
    """What a result records of its store: path, fingerprint, manifests, strain, simulator."""
    attrs = open_store(path).attrs
    return {
        "store_path": str(path),
        "store_fingerprint": str(attrs.get("fingerprint", "")),
        "manifest_sha256": str(attrs.get("manifest_sha256", "")),
        "strain_mode": str(attrs.get("strain_mode", "")),
        "simulator_version": str(attrs.get("simulator_version", "")),
    }


def materials_per_chunk(path: StorePath) -> int:
    """Materials per chunk along ``material``: every region write is a multiple of it."""
    return int(open_store(path).attrs["materials_per_chunk"])


def _check_region(start: int, stop: int, chunk: int, n_materials: int) -> None:
    if not 0 <= start < stop <= n_materials:
        raise StoreError(
            f"region [{start}, {stop}) is not inside the store's {n_materials} materials"
        )
    if start % chunk != 0 or (stop % chunk != 0 and stop != n_materials):
        raise StoreError(
            f"region [{start}, {stop}) is not aligned to the material chunks of "
            f"{chunk}: start must be a multiple of {chunk} and stop a multiple of {chunk} "
            f"or {n_materials} (misaligned parallel writes corrupt chunks)"
        )


def _open_group(path: StorePath, mode: str = "r+") -> zarr.Group:
    """The store's Zarr group, for region writes or ``mode="r"`` reads (StoreError if absent)."""
    try:
        return zarr.open_group(_url(path), mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError) as exc:
        raise StoreError(
            f"no pattern store at {_url(path)}: run the simulation first ({exc})"
        ) from exc


def write_block(path: StorePath, start: int, stop: int, arrays: Mapping[str, Any]) -> None:
    """Write whole materials ``[start, stop)`` as one chunk-aligned region.

    Does not set ``completed``: call :func:`mark_completed` after this returns. Every
    variable is checked (names, shapes, finite values, status) before anything is
    written; then each is written straight into its Zarr array over the region (the
    arrays and their encodings were laid out by :func:`create_store`; reopening the
    dataset with xarray for each block cost more than simulating a small material).

    Args:
        path: the store.
        start: first material (a multiple of ``materials_per_chunk``).
        stop: one past the last material (a multiple of it, or the number of materials).
        arrays: every name of :data:`BLOCK_VARIABLES`, each with leading axis
            ``stop - start`` and the store's other axes; the ``peak`` axis may be cut to
            a multiple of the store's ``peaks_per_chunk`` (the slots beyond read as empty).

    Raises:
        StoreError: a misaligned region, a missing, unknown or misshapen variable, a
            non-finite value (the message names the variable), or a bad status.
    """
    group = _open_group(path)
    attrs = group.attrs
    n_materials = int(attrs["n_materials"])
    _check_region(start, stop, int(attrs["materials_per_chunk"]), n_materials)
    names = set(arrays)
    missing = sorted(set(BLOCK_VARIABLES) - names)
    unknown = sorted(names - set(BLOCK_VARIABLES))
    if missing or unknown:
        raise StoreError(
            f"block [{start}, {stop}) variables: missing {missing}, unknown {unknown}; "
            f"required exactly {list(BLOCK_VARIABLES)}"
        )
    n_peaks = int(attrs["n_peaks"])
    width = np.shape(arrays["two_theta"])[-1] if np.ndim(arrays["two_theta"]) == 3 else n_peaks
    per_chunk = int(attrs.get("peaks_per_chunk", n_peaks))
    if width != n_peaks and (width % per_chunk or width > n_peaks):
        raise StoreError(
            f"block [{start}, {stop}) has {width} peak slots: must be the store's {n_peaks} "
            f"or a multiple of its {per_chunk} peaks per chunk below it"
        )
    checked: dict[str, tuple[tuple[slice, ...], np.ndarray]] = {}
    for name, (dims, dtype, _) in VARIABLES.items():
        target = group[name]
        sizes = dict(zip(dims, target.shape, strict=True)) | {"peak": width}
        expected = (stop - start, *(sizes[d] for d in dims[1:]))
        if name in _STRING_VARIABLES:
            values = np.array([str(v) for v in np.asarray(arrays[name]).ravel()], dtype=object)
        else:
            values = np.asarray(arrays[name])
        if values.shape != expected:
            raise StoreError(
                f"variable {name!r} of block [{start}, {stop}) has shape {values.shape}, "
                f"expected {expected} {dims}"
            )
        if name not in _STRING_VARIABLES:
            if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
                bad = int(np.size(values) - np.isfinite(values).sum())
                raise StoreError(
                    f"variable {name!r} of block [{start}, {stop}) holds {bad} non-finite "
                    "values (NaN or inf); nothing was written"
                )
            values = values.astype(dtype, copy=False)
        axes = {"material": slice(start, stop), "peak": slice(0, width)}
        region = tuple(axes.get(d, slice(None)) for d in dims)
        checked[name] = (region, values)
    bad_status = sorted(set(checked["status"][1]) - {STATUS_OK, STATUS_QUARANTINED})
    if bad_status:
        raise StoreError(
            f"status values {bad_status} of block [{start}, {stop}) are not one of "
            f"{[STATUS_OK, STATUS_QUARANTINED]}"
        )
    try:
        for name, (region, values) in checked.items():
            group[name][region] = values
    except (OSError, ValueError, TypeError) as exc:
        raise StoreError(f"cannot write block [{start}, {stop}) to {_url(path)}: {exc}") from exc


def mark_completed(
    path: StorePath, start: int, stop: int, flags: np.ndarray | bool | None = None
) -> None:
    """Set the ``completed`` flags of materials ``[start, stop)`` (a chunk-aligned region).

    Args:
        path: the store.
        start: first material (chunk-aligned, as in :func:`write_block`).
        stop: one past the last material.
        flags: one bool per material, or one bool for all; default ``True``.

    Raises:
        StoreError: a misaligned region or flags of the wrong length.
    """
    group = _open_group(path)
    _check_region(
        start, stop, int(group.attrs["materials_per_chunk"]), int(group.attrs["n_materials"])
    )
    if flags is None or np.ndim(flags) == 0:
        values = np.full(stop - start, True if flags is None else bool(flags), dtype=bool)
    else:
        values = np.asarray(flags, dtype=bool)
        if values.shape != (stop - start,):
            raise StoreError(
                f"completed flags have shape {values.shape}, expected ({stop - start},)"
            )
    group["completed"][start:stop] = values


def completed_materials(path: StorePath) -> np.ndarray:
    """The ``completed`` flag of every material (bool array over ``material``)."""
    return np.asarray(open_store(path)["completed"].values, dtype=bool)


def _kept(store: xr.Dataset, include_quarantined: bool) -> np.ndarray:
    keep = np.asarray(store["completed"].values, dtype=bool)
    if not include_quarantined:
        keep &= np.asarray(store["status"].values == STATUS_OK, dtype=bool)
    return np.flatnonzero(keep)


def completed_indices(path: StorePath, include_quarantined: bool = False) -> np.ndarray:
    """Store indices of the materials :func:`load_completed` keeps, in order."""
    return _kept(open_store(path), include_quarantined)


def load_completed(path: StorePath, include_quarantined: bool = False) -> xr.Dataset:
    """The store restricted to the materials readers may trust.

    Args:
        path: the store.
        include_quarantined: also keep completed materials quarantined at simulate time
            (their peak arrays are empty: ``peak_mask`` false everywhere).

    Returns:
        A lazy dataset over the completed (and, by default, ``ok``) materials only.
    """
    store = open_store(path)
    return store.isel(material=_kept(store, include_quarantined))
