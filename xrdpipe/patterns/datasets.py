"""Pattern-store readers for the engine: peak lists into memory, stored single-phase profiles.

The store module owns the layout; this module turns what it returns into the engine's
tensors (:class:`~xrdpipe.patterns.mixtures.PeakArrays`) and renders the store's default
single-phase profiles (paper 000's classifier trains on them; baselines use them as fixed
vectors).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xrdpipe import store
from xrdpipe.errors import StoreError
from xrdpipe.files import write_atomic
from xrdpipe.patterns.config import MixtureConfig, ProfileConfig
from xrdpipe.patterns.mixtures import PeakArrays, make_fixed_mixture_set
from xrdpipe.patterns.render import render_clean, two_theta_grid

SPLITS = ("train", "test", "reference")


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
    columns = (*store.MATERIAL_COORDS, *store.OPTIONAL_MATERIAL_COORDS)
    return pd.DataFrame({c: ds[c].values for c in columns if c in ds.coords})


def manifest_beside(store_path: store.StorePath) -> str:
    """The subset's ``manifest.parquet`` in the folder of its pattern store (path or URL)."""
    return posixpath.join(posixpath.dirname(os.fspath(store_path).rstrip("/")), "manifest.parquet")


def material_orientation(
    manifest_path: store.StorePath, cod_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Laue-group rotations and reciprocal bases of materials, from the manifest's structures.

    The structures are the cells the simulator used, so the stored Miller indices refer to
    them (see :func:`xrdpipe.patterns.orientation.orientation_tables`; spglib with the
    manifest's tolerances).

    Raises:
        StoreError: the manifest cannot be read or lacks a material.
    """
    from xrdpipe.patterns.orientation import orientation_tables
    from xrdpipe.structures.manifest import structure_from_json
    from xrdpipe.structures.symmetry import ANGLE_TOLERANCE, SYMPREC

    try:
        manifest = pd.read_parquet(manifest_path, columns=["cod_id", "structure_json"])
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(
            f"preferred orientation needs the manifest's structures; cannot read "
            f"{manifest_path}: {exc}"
        ) from exc
    by_id = dict(zip(manifest["cod_id"].astype(str), manifest["structure_json"], strict=True))
    missing = [str(i) for i in cod_ids if str(i) not in by_id]
    if missing:
        raise StoreError(f"materials {missing[:5]} are not in the manifest {manifest_path}")
    structures = [structure_from_json(by_id[str(i)]) for i in cod_ids]
    return orientation_tables(structures, SYMPREC, ANGLE_TOLERANCE)


def material_names(ds: xr.Dataset) -> list[str]:
    """Each material's name for messages: its phase name, else ``<cod_id> <formula>``."""
    if "phase_name" in ds.coords:
        return [str(n) for n in ds["phase_name"].values]
    return [f"{i} {f}" for i, f in zip(ds["cod_id"].values, ds["formula"].values, strict=True)]


def material_absorption(ds: xr.Dataset, wavelength: float) -> np.ndarray:
    """``(M, S)`` linear absorption coefficients ``mu = rho (mu/rho)``, 1/cm.

    ``mu/rho`` depends on the composition only (the ``formula`` coordinate), so it is looked
    up once per material (:func:`~xrdpipe.diffraction.quantitative.mass_attenuation`,
    ``xraydb``); each strain condition's density scales it.

    Raises:
        StoreError: a formula that cannot be read or has an element without absorption data.
    """
    from xrdpipe.diffraction.quantitative import mass_attenuation

    mass = []
    for cod_id, formula in zip(ds["cod_id"].values, ds["formula"].values, strict=True):
        try:
            mass.append(mass_attenuation(str(formula), wavelength))
        except (ValueError, KeyError) as exc:
            raise StoreError(
                f"no absorption coefficient for material {cod_id} (formula {formula!r}) at "
                f"{wavelength} angstrom: {exc}"
            ) from exc
    return np.asarray(ds["density"].values, dtype=np.float64) * np.asarray(mass)[:, None]


def load_peaks(
    store_path: store.StorePath,
    split: str = "train",
    materials: list[str] | None = None,
    device: torch.device | str = "cpu",
    *,
    orientation: bool = False,
    manifest_path: store.StorePath | None = None,
    absorption: bool = False,
) -> StorePeaks:
    """Read one split of a store's completed materials into memory, once.

    Args:
        store_path: the pattern store.
        split: ``train``, ``test`` or ``reference`` (the unstrained condition).
        materials: COD ids to keep, in this order (default: every completed material).
        device: where the tensors live.
        orientation: also load what preferred orientation (March-Dollase) needs: each
            peak's Miller indices and each material's point-group rotations and reciprocal
            basis (from the manifest's structures, once).
        manifest_path: the subset's manifest (default: :func:`manifest_beside` the store).
        absorption: also each (material, strain)'s linear absorption coefficient at the
            store's wavelength (Brindley microabsorption, ``MixtureConfig.particle_radius_um``):
            :func:`material_absorption`, once per material.

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
    oriented: dict[str, np.ndarray] = {}
    if orientation:
        cod_ids = [str(i) for i in ds["cod_id"].values]
        rotations, basis = material_orientation(
            manifest_path if manifest_path is not None else manifest_beside(store_path), cod_ids
        )
        oriented = {"hkl": ds["hkl"].values, "rotations": rotations, "reciprocal_basis": basis}
    if absorption:
        oriented["linear_absorption"] = material_absorption(ds, float(ds.attrs["wavelength"]))
    peaks = PeakArrays.from_arrays(
        arrays["two_theta"],
        arrays["intensity"],
        arrays["peak_mask"],
        intensity_raw=arrays["intensity_raw"],
        d_spacing=arrays["d_spacing"],
        volume=ds["volume"].values,
        density=ds["density"].values,
        device=device,
        names=material_names(ds),
        **oriented,
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
    keys = (
        "two_theta_min",
        "two_theta_max",
        "n_points",
        "scherrer_k",
        "ka_doublet",
        "ka1",
        "ka2",
        "ka2_ratio",
        "clean_eta",
        "clean_crystallite_size_nm",
    )
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
                flat["two_theta"][sl],
                flat["intensity"][sl],
                flat["peak_mask"][sl],
                cfg,
                wavelength=wavelength,
                d_spacing=flat["d_spacing"][sl],
            ).numpy()
        store.write_profiles(store_path, key, a, b, out.reshape(m, s, len(grid)))
        if progress is not None:
            progress(count, len(todo))
    return key


def load_profiles(
    store_path: store.StorePath,
    cfg: ProfileConfig,
    split: str | Sequence[str] = "train",
    max_strains_per_material: int | None = None,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """Stored single-phase profiles: ``(M, S, n_points)``, the materials, the grid (degrees).

    Only materials whose peaks and profiles are both completed (and not quarantined).

    Args:
        store_path: the store.
        cfg: the profile settings (they name the profile group).
        split: a split, or several, whose strain conditions are taken in that order.
        max_strains_per_material: keep only the first this many of those strains (read
            lazily, so only they are loaded); ``None``: all.

    Raises:
        StoreError: an unknown split.
    """
    splits = [split] if isinstance(split, str) else list(split)
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise StoreError(f"split {', '.join(map(repr, unknown))} is not one of {SPLITS}")
    peaks_ds = store.open_store(store_path)
    key = store.profiles_key(peaks_ds.attrs["fingerprint"], profile_settings(cfg))
    group = store.open_profiles(store_path, key)
    keep = (
        np.asarray(group["completed"].values, dtype=bool)
        & np.asarray(peaks_ds["completed"].values, dtype=bool)
        & (peaks_ds["status"].values == store.STATUS_OK)
    )
    idx = np.flatnonzero(keep)
    split_of = group["split"].values.astype(object)
    strains = np.concatenate([np.flatnonzero(split_of == s) for s in splits])
    if max_strains_per_material is not None:
        strains = strains[:max_strains_per_material]
    profiles = group["profile"].isel(material=idx, strain=strains).values
    return profiles, material_table(peaks_ds.isel(material=idx)), group["two_theta"].values


@dataclass(frozen=True)
class FixedMixtureSet:
    """A fixed, seeded set of mixtures (validation or test) and its identity.

    Attributes:
        patterns: ``(n, n_points)`` rendered mixtures.
        phase_fractions: ``(n, N)`` targets.
        sha256: hash of both tensors (reproducible on the same device type).
        key: hash of the spec (store fingerprint, split, materials, settings, n, seed).
        spec: what the set was drawn from.
    """

    patterns: torch.Tensor
    phase_fractions: torch.Tensor
    sha256: str
    key: str
    spec: dict


def fixed_mixture_set(
    store_path: store.StorePath,
    split: str,
    materials: list[str],
    cfg: MixtureConfig,
    profile: ProfileConfig,
    n: int = 10_000,
    seed: int = 0,
    record_dir: Path | None = None,
    device: torch.device | str = "cpu",
    strain_index: np.ndarray | None = None,
) -> FixedMixtureSet:
    """Draw (or redraw) a fixed mixture set, recorded by its spec and hash.

    The set is small to describe and large to keep (10,000 x 4501 floats), so what is
    stored under ``record_dir`` is its spec and SHA-256: a later call with the same spec
    redraws it and refuses (:class:`StoreError`) if the hash differs, so every model and
    baseline is scored on exactly the same samples.

    Args:
        store_path: the pattern store.
        split: ``test`` (held-out strain conditions) or ``train``.
        materials: COD ids of the N materials, in target order.
        cfg: mixture settings (``n_materials`` must equal ``len(materials)``).
        profile: peak shape, noise and background.
        n: number of mixtures.
        seed: seed of the set.
        record_dir: where the ``<key>.json`` records live (``None``: not recorded).
        device: where the returned tensors live. The set is always drawn and rendered on
            the CPU: GPU kernels that accumulate with atomics (scatter, index_add) are not
            bitwise reproducible, and a fixed set must redraw to the same hash on every
            machine (a CUDA redraw of one spec gave another hash).
        strain_index: positions within the split to draw from (e.g. the 40 % validation
            part of the training strains); default all.
    """
    target_device = torch.device(device)
    device = "cpu"
    peaks = load_peaks(
        store_path,
        split,
        materials,
        device,
        orientation=profile.needs_orientation,
        absorption=cfg.particle_radius_um is not None,
    )
    arrays = peaks.peaks
    if strain_index is not None:
        arrays = arrays.select_strains(torch.as_tensor(np.asarray(strain_index)))
    spec = {
        "store_fingerprint": peaks.fingerprint,
        "split": split,
        "strain_index": None if strain_index is None else [int(i) for i in strain_index],
        "materials": [str(m) for m in materials],
        "mixture": cfg.model_dump(mode="json"),
        "profile": profile.model_dump(mode="json"),
        "n": n,
        "seed": seed,
        "device_type": "cpu",
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    patterns, fractions, sha = make_fixed_mixture_set(
        arrays, cfg, profile, n=n, seed=seed, device=device, wavelength=peaks.wavelength
    )
    if record_dir is not None:
        record = Path(record_dir) / f"{key}.json"
        if record.is_file():
            stored = json.loads(record.read_text())
            if stored["sha256"] != sha:
                raise StoreError(
                    f"fixed mixture set {key} no longer reproduces: recorded sha256 "
                    f"{stored['sha256'][:12]}..., redrawn {sha[:12]}... (code or device changed)"
                )
        else:
            record.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"key": key, "sha256": sha, "spec": spec}, indent=1)
            write_atomic(record, lambda tmp: tmp.write_text(text))  # members may race here
    return FixedMixtureSet(patterns.to(target_device), fractions.to(target_device), sha, key, spec)
