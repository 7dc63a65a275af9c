"""One block of the simulate stage: a few materials' strained peak lists, ready for the store.

:func:`simulate_block` rebuilds each structure from the manifest, draws its strain
conditions (seeded by the subset seed and the material's manifest index, so the numbers do
not depend on blocking or scheduling), simulates the peak lists with the subset's scattering
settings (:func:`simulate_material`), writes the block's region and only then sets its
``completed`` flags. :mod:`xrdpipe.stages.simulate` plans the blocks and runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from xrdpipe.config import SimulationConfig
from xrdpipe.diffraction import peaks, strain
from xrdpipe.errors import StoreError, StructureError
from xrdpipe.store import layout as store

ROW_COLUMNS = ("cod_id", "structure_json")
"""The manifest columns a block task receives (nothing else travels to the workers)."""

_PEAK_FIELDS = (
    "two_theta",
    "intensity",
    "intensity_raw",
    "d_spacing",
    "multiplicity",
    "hkl",
    "peak_mask",
)
_FLOAT_FIELDS = ("two_theta", "intensity", "intensity_raw", "d_spacing", "volume", "density")


@dataclass(frozen=True)
class BlockReport:
    """What one block did.

    Attributes:
        start: first material of the block (manifest index).
        stop: one past its last material.
        simulated: materials simulated and stored with ``status='ok'``.
        quarantined: ``cod_id -> reason`` of materials quarantined at simulate time.
        seconds: wall time of the block, writes included.
    """

    start: int
    stop: int
    simulated: int
    quarantined: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def rebuild_structure(structure_json: str) -> Structure:
    """The pymatgen structure of a manifest row.

    Raises:
        StructureError: (stage ``simulate``) the JSON does not rebuild a structure.
    """
    try:
        return Structure.from_dict(json.loads(structure_json))
    except Exception as exc:  # noqa: BLE001 - pymatgen's from_dict raises many kinds
        raise StructureError(
            stage="simulate",
            reason="structure_json does not rebuild a pymatgen Structure",
            detail=str(exc)[:200],
        ) from exc


def n_strain_conditions(sim: SimulationConfig) -> int:
    """Patterns per material: training, test and one unstrained reference."""
    return sim.n_train_strains + sim.n_test_strains + 1


def simulate_material(
    structure: Structure,
    material_index: int,
    sim: SimulationConfig,
    seed: int,
    n_peaks: int,
) -> dict[str, np.ndarray]:
    """Strain conditions and peak lists of one material, as arrays without the material axis.

    Args:
        structure: the unstrained structure.
        material_index: its row in the manifest (seeds its strain draws).
        sim: the subset's simulation settings.
        seed: the subset seed.
        n_peaks: the store's peak axis length (a structure with more peaks is rejected).

    Returns:
        Every numeric :data:`xrdpipe.store.layout.BLOCK_VARIABLES` entry, leading axis
        ``strain``; the peak axis is as long as this material's longest list.

    Raises:
        StructureError: the simulator rejected the structure, or produced non-finite values.
    """
    strains = strain.strain_conditions(
        structure,
        n_train=sim.n_train_strains,
        n_test=sim.n_test_strains,
        max_strain=sim.max_strain,
        mode=sim.strain_mode,
        seed=seed,
        material_index=material_index,
    )
    table = peaks.simulate_peaks(
        structure,
        strains,
        wavelength=sim.wavelength,
        two_theta_range=sim.two_theta_range,
        scattering=sim.scattering,
        displacement=sim.displacement,
        overall_b=sim.overall_b,
    )
    if table.max_peaks > n_peaks:
        raise StructureError(
            "simulate",
            "too_many_reflections",
            f"{table.max_peaks} peaks exceed max_peaks={n_peaks}",
        )
    out = {
        "two_theta": np.asarray(table.two_theta, dtype="f8"),
        "intensity": np.asarray(table.intensity, dtype="f8"),
        "intensity_raw": np.asarray(table.intensity_raw, dtype="f8"),
        "d_spacing": np.asarray(table.d_spacing, dtype="f8"),
        "multiplicity": np.asarray(table.multiplicity, dtype="i4"),
        "hkl": np.asarray(table.hkl, dtype="i4"),
        "peak_mask": np.asarray(table.mask, dtype=bool),
        "n_peaks": np.asarray(table.n_peaks, dtype="i4"),
        "volume": np.asarray(table.volume, dtype="f8"),
        "density": np.asarray(table.density, dtype="f8"),
        "strain_tensor": np.asarray(strains, dtype="f8"),
    }
    n_strain = n_strain_conditions(sim)
    width = out["two_theta"].shape[-1] if out["two_theta"].ndim == 2 else -1
    if out["two_theta"].shape != (n_strain, width) or out["strain_tensor"].shape != (
        n_strain,
        3,
        3,
    ):
        raise StoreError(
            f"simulator returned two_theta {out['two_theta'].shape} and strains "
            f"{out['strain_tensor'].shape} for material {material_index}, expected "
            f"({n_strain}, <= {n_peaks}) and ({n_strain}, 3, 3)"
        )
    for name in (*_FLOAT_FIELDS, "strain_tensor"):
        if not np.isfinite(out[name]).all():
            raise StructureError(
                stage="simulate", reason="non-finite simulated values", detail=name
            )
    return out


def _empty_block(n: int, n_strain: int, n_peaks: int) -> dict[str, np.ndarray]:
    peak_shape = (n, n_strain, n_peaks)
    return {
        "two_theta": np.zeros(peak_shape),
        "intensity": np.zeros(peak_shape),
        "intensity_raw": np.zeros(peak_shape),
        "d_spacing": np.zeros(peak_shape),
        "multiplicity": np.zeros(peak_shape, dtype="i4"),
        "hkl": np.zeros((*peak_shape, 3), dtype="i4"),
        "peak_mask": np.zeros(peak_shape, dtype=bool),
        "n_peaks": np.zeros((n, n_strain), dtype="i4"),
        "volume": np.zeros((n, n_strain)),
        "density": np.zeros((n, n_strain)),
        "strain_tensor": np.zeros((n, n_strain, 3, 3)),
        "status": np.full(n, store.STATUS_OK, dtype=object),
        "quarantine_reason": np.full(n, "", dtype=object),
    }


def _records(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[Mapping[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    return list(rows)


def simulate_block(
    store_path: str,
    manifest_rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    start: int,
    stop: int,
    sim_config: SimulationConfig,
    seed: int,
    n_peaks: int,
) -> BlockReport:
    """Simulate materials ``[start, stop)`` and write them, then their completion flags.

    Idempotent: every value depends only on the rows, the indices and the settings.

    Args:
        store_path: the (already created) store.
        manifest_rows: the block's manifest rows, in order, each with ``cod_id`` and
            ``structure_json``.
        start: manifest index of the first row (chunk-aligned).
        stop: one past the last row's index.
        sim_config: the subset's simulation settings.
        seed: the subset seed.
        n_peaks: the store's peak axis length.

    Returns:
        The block's report.
    """
    t0 = time.perf_counter()
    rows = _records(manifest_rows)
    if len(rows) != stop - start:
        raise ValueError(f"block [{start}, {stop}) got {len(rows)} manifest rows")
    simulated: dict[int, dict[str, np.ndarray]] = {}
    failed: dict[int, str] = {}
    for offset, row in enumerate(rows):
        try:
            structure = rebuild_structure(row["structure_json"])
            simulated[offset] = simulate_material(
                structure, start + offset, sim_config, seed, n_peaks
            )
        except StructureError as exc:
            failed[offset] = str(exc)
    # Only the peak chunks the block's longest list reaches are written (store layout).
    longest = max((v["two_theta"].shape[-1] for v in simulated.values()), default=1)
    per_chunk = store.PEAKS_PER_CHUNK
    width = min(n_peaks, -(-max(longest, 1) // per_chunk) * per_chunk)
    arrays = _empty_block(stop - start, n_strain_conditions(sim_config), width)
    quarantined: dict[str, str] = {}
    for offset, reason in failed.items():
        arrays["status"][offset] = store.STATUS_QUARANTINED
        arrays["quarantine_reason"][offset] = reason
        quarantined[str(rows[offset]["cod_id"])] = reason
    for offset, values in simulated.items():
        for name, value in values.items():
            if value.ndim >= 2 and name in _PEAK_FIELDS:
                arrays[name][offset, :, : value.shape[1]] = value
            else:
                arrays[name][offset] = value
    store.write_block(store_path, start, stop, arrays)
    store.mark_completed(store_path, start, stop)
    return BlockReport(
        start=start,
        stop=stop,
        simulated=stop - start - len(quarantined),
        quarantined=quarantined,
        seconds=time.perf_counter() - t0,
    )
