"""Pattern-store readers for the engine: peak lists into memory, stored single-phase profiles.

The store module owns the layout; this module turns what it returns into the engine's
tensors (:class:`~xrdpipe.patterns.mixtures.PeakArrays`) and renders the store's default
single-phase profiles (paper 000's classifier trains on them; baselines use them as fixed
vectors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xrdpipe import store
from xrdpipe.errors import StoreError
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.patterns.render import render_clean, two_theta_grid

SPLITS = ("train", "test", "reference")

MATERIAL_COLUMNS = (
    "cod_id",
    "formula",
    "space_group_number",
    "space_group_symbol",
    "crystal_system",
    "lattice_system",
)


@dataclass(frozen=True)
class StorePeaks:
    """Peak lists of one split of a store, in memory.

    Attributes:
        peaks: ``(M, S, P)`` tensors, the peak axis trimmed to the longest real list.
        materials: one row per material (``cod_id``, formula, space group, labels).
        strain_index: the store's strain indices of the ``S`` conditions.
        wavelength: angstrom.
        fingerprint: the store's fingerprint (identifies the peak data).
    """

    peaks: PeakArrays
    materials: pd.DataFrame
    strain_index: np.ndarray
    wavelength: float
    fingerprint: str


def material_table(ds: xr.Dataset) -> pd.DataFrame:
    """The material coordinates of a store as a frame (manifest order)."""
    return pd.DataFrame({c: ds[c].values for c in MATERIAL_COLUMNS if c in ds.coords})


def load_peaks(
    store_path: store.StorePath,
    split: str = "train",
    materials: list[str] | None = None,
    device: torch.device | str = "cpu",
) -> StorePeaks:
    """Read one split of a store's completed materials into memory, once.

    Args:
        store_path: the pattern store.
        split: ``train``, ``test`` or ``reference`` (the unstrained condition).
        materials: COD ids to keep, in this order (default: every completed material).
        device: where the tensors live.

    Raises:
        StoreError: unknown split, or a requested material missing or not completed.
    """
    if split not in SPLITS:
        raise StoreError(f"split {split!r} is not one of {SPLITS}")
    ds = store.load_completed(store_path)
    if materials is not None:
        ids = [str(i) for i in materials]
        where = {cod_id: i for i, cod_id in enumerate(ds["cod_id"].values.astype(object))}
        missing = [i for i in ids if i not in where]
        if missing:
            raise StoreError(f"materials {missing} are not completed in {store_path}")
        ds = ds.isel(material=[where[i] for i in ids])
    strain_index = np.flatnonzero(ds["split"].values.astype(object) == split)
    ds = ds.isel(strain=strain_index)
    n_peaks = int(ds["n_peaks"].max().values) if ds.sizes["material"] else 0
    ds = ds.isel(peak=slice(0, max(n_peaks, 1)))
    arrays = {
        name: ds[name].values
        for name in ("two_theta", "intensity", "peak_mask", "intensity_raw", "d_spacing")
    }
    peaks = PeakArrays.from_arrays(
        arrays["two_theta"],
        arrays["intensity"],
        arrays["peak_mask"],
        intensity_raw=arrays["intensity_raw"],
        d_spacing=arrays["d_spacing"],
        volume=ds["volume"].values,
        density=ds["density"].values,
        device=device,
    )
    return StorePeaks(
        peaks=peaks,
        materials=material_table(ds),
        strain_index=strain_index,
        wavelength=float(ds.attrs["wavelength"]),
        fingerprint=str(ds.attrs["fingerprint"]),
    )


def profile_settings(cfg: ProfileConfig) -> dict:
    """What determines a stored profile: the grid and the fixed peak shape."""
    keys = ("two_theta_min", "two_theta_max", "n_points", "scherrer_k", "ka_doublet",
            "ka1", "ka2", "ka2_ratio", "clean_eta", "clean_crystallite_size_nm")
    return {k: getattr(cfg, k) for k in keys}


def render_store_profiles(
    store_path: store.StorePath,
    cfg: ProfileConfig,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 2048,
) -> str:
    """Render every (material, strain) peak list of a store with the default peak shape.

    Writes the group ``profiles/<key>`` (see :func:`xrdpipe.store.profiles_key`), block by
    block with completion flags, so an interrupted run resumes. Materials quarantined at
    simulate time get zero profiles.

    Returns:
        The group key.
    """
    peaks_ds = store.open_store(store_path)
    settings = profile_settings(cfg)
    key = store.profiles_key(peaks_ds.attrs["fingerprint"], settings)
    grid = two_theta_grid(cfg).cpu().numpy()
    group = store.create_profiles(store_path, key, grid, settings)
    done = np.asarray(group["completed"].values, dtype=bool)
    peak_done = np.asarray(peaks_ds["completed"].values, dtype=bool)
    chunk = store.materials_per_chunk(store_path)
    n_mat = peaks_ds.sizes["material"]
    blocks = [(a, min(a + chunk, n_mat)) for a in range(0, n_mat, chunk)]
    todo = [(a, b) for a, b in blocks if not done[a:b].all()]
    wavelength = float(peaks_ds.attrs["wavelength"])
    for count, (a, b) in enumerate(todo, start=1):
        if not peak_done[a:b].all():
            raise StoreError(
                f"materials {a}:{b} of {store_path} are not simulated yet: simulate first"
            )
        block = peaks_ds.isel(material=slice(a, b))
        n_peaks = max(int(block["n_peaks"].max().values), 1)
        block = block.isel(peak=slice(0, n_peaks))
        m, s = block.sizes["material"], block.sizes["strain"]
        flat = {
            name: block[name].values.reshape(m * s, n_peaks)
            for name in ("two_theta", "intensity", "peak_mask", "d_spacing")
        }
        out = np.zeros((m * s, len(grid)), dtype=np.float32)
        for i in range(0, m * s, batch):
            sl = slice(i, i + batch)
            if not flat["peak_mask"][sl].any():
                continue
            out[sl] = render_clean(
                flat["two_theta"][sl], flat["intensity"][sl], flat["peak_mask"][sl], cfg,
                wavelength=wavelength, d_spacing=flat["d_spacing"][sl],
            ).numpy()
        store.write_profiles(store_path, key, a, b, out.reshape(m, s, len(grid)))
        if progress is not None:
            progress(count, len(todo))
    return key


def load_profiles(
    store_path: store.StorePath, cfg: ProfileConfig, split: str = "train"
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Stored single-phase profiles of one split: ``(M, S, n_points)``, materials, grid.

    Only materials whose peaks and profiles are both completed (and not quarantined).
    """
    if split not in SPLITS:
        raise StoreError(f"split {split!r} is not one of {SPLITS}")
    peaks_ds = store.open_store(store_path)
    key = store.profiles_key(peaks_ds.attrs["fingerprint"], profile_settings(cfg))
    group = store.open_profiles(store_path, key)
    keep = (
        np.asarray(group["completed"].values, dtype=bool)
        & np.asarray(peaks_ds["completed"].values, dtype=bool)
        & (peaks_ds["status"].values == store.STATUS_OK)
    )
    idx = np.flatnonzero(keep)
    strains = np.flatnonzero(group["split"].values.astype(object) == split)
    profiles = group["profile"].isel(material=idx, strain=strains).values
    return profiles, material_table(peaks_ds.isel(material=idx)), group["two_theta"].values
