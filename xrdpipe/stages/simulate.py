"""Simulate a subset's peak lists into its pattern store: block by block, resumable.

The work is split into blocks of ``materials_per_chunk`` materials, one Zarr chunk each
along ``material``, so each block is one task with a private region of the store:

1. :func:`run_simulation` sizes the ``peak`` axis (the largest
   :func:`~xrdpipe.diffraction.peaks.reflection_upper_bound` of any material), creates the
   store or checks an existing one's configuration fingerprint, and submits only the
   blocks that hold a material not yet ``completed``.
2. :func:`simulate_block` rebuilds each structure from the manifest, draws its strain
   conditions (seeded by the subset seed and the material's manifest index, so the
   numbers do not depend on blocking or scheduling), simulates the peak lists, writes the
   block's region and only then sets its ``completed`` flags.
3. A material whose simulation raises :class:`~xrdpipe.errors.StructureError` is stored
   as ``status='quarantined'`` with the reason and empty peak arrays, and is completed too,
   so reruns do not retry it.

A block is idempotent: running it twice (Dask reruns tasks of dead workers) writes the
same bytes. An interrupted run is resumed by running it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from xrdpipe.config import Settings, SimulationConfig, SubsetConfig
from xrdpipe.diffraction import peaks, strain
from xrdpipe.errors import StoreError, StructureError
from xrdpipe.store import layout as store
from xrdpipe.structures import manifest as manifest_io

if TYPE_CHECKING:
    from distributed import Client

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


@dataclass(frozen=True)
class SimulationReport:
    """What a run did.

    Attributes:
        store_path: the store.
        fingerprint: the store's configuration fingerprint.
        n_materials: materials in the manifest.
        n_peaks: length of the store's ``peak`` axis.
        n_blocks: blocks in the whole store.
        blocks_submitted: blocks computed by this run.
        blocks_skipped: blocks already complete, not recomputed.
        simulated: materials simulated with ``status='ok'`` by this run.
        skipped: materials in skipped (already complete) blocks.
        quarantined: ``cod_id -> reason`` of materials this run quarantined.
        wall_s: wall time of the run, seconds.
    """

    store_path: str
    fingerprint: str
    n_materials: int
    n_peaks: int
    n_blocks: int
    blocks_submitted: int
    blocks_skipped: int
    simulated: int
    skipped: int
    quarantined: dict[str, str]
    wall_s: float


ProgressCallback = Callable[[BlockReport, int, int], None]
"""Called after each finished block with (report, blocks done, blocks submitted)."""


def plan_blocks(n_materials: int, materials_per_chunk: int) -> list[tuple[int, int]]:
    """The chunk-aligned ``(start, stop)`` blocks covering ``n_materials`` materials.

    Args:
        n_materials: materials in the manifest.
        materials_per_chunk: materials per block (= per Zarr chunk).

    Returns:
        Consecutive half-open ranges; the last may be shorter.
    """
    if materials_per_chunk < 1:
        raise ValueError(f"materials_per_chunk={materials_per_chunk!r} must be >= 1")
    return [
        (start, min(start + materials_per_chunk, n_materials))
        for start in range(0, n_materials, materials_per_chunk)
    ]


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


def frame_sha256(manifest: pd.DataFrame) -> str:
    """A content hash of a manifest frame (its ``cod_id`` and ``structure_json``, in order)."""
    digest = hashlib.sha256()
    for cod_id, structure_json in zip(manifest["cod_id"], manifest["structure_json"], strict=True):
        digest.update(f"{cod_id}\0{structure_json}\0".encode())
    return digest.hexdigest()


def peak_axis_length(manifest: pd.DataFrame, sim: SimulationConfig) -> int:
    """The ``peak`` axis: the largest reflection bound over the manifest (at least 1).

    Structures that do not rebuild or that the bound rejects are left out here; their
    blocks quarantine them.
    """
    bound = 1
    for structure_json in manifest["structure_json"]:
        try:
            structure = rebuild_structure(structure_json)
            n = peaks.reflection_upper_bound(
                structure, sim.max_strain, sim.wavelength, sim.two_theta_range
            )
        except StructureError:
            continue
        bound = max(bound, int(n))
    return bound


def block_costs(manifest: pd.DataFrame, blocks: Sequence[tuple[int, int]]) -> list[float]:
    """Relative cost of each block: the sum of ``n_sites x volume`` of its materials.

    The reflections in a two-theta range grow with the cell volume and each costs one
    structure-factor term per site, so ``n_sites x volume`` ranks blocks by work. Without
    those manifest columns every material counts 1.
    """
    if {"n_sites", "volume"} <= set(manifest.columns):
        weight = (
            pd.to_numeric(manifest["n_sites"], errors="coerce").fillna(1.0)
            * pd.to_numeric(manifest["volume"], errors="coerce").fillna(1.0)
        ).to_numpy(dtype=float)
    else:
        weight = np.ones(len(manifest))
    return [float(weight[a:b].sum()) for a, b in blocks]


def _store_url(store_path: store.StorePath) -> str:
    url = os.fspath(store_path)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return url if "://" in url else str(Path(url).resolve())


def load_manifest(folder: str | os.PathLike[str]) -> tuple[pd.DataFrame, str]:
    """A subset's manifest frame and the SHA-256 of its ``manifest.parquet``.

    Args:
        folder: the subset folder (``<data_dir>/<subset>``).

    Returns:
        ``(manifest, sha256)``.
    """
    folder = Path(folder)
    frame = manifest_io.read_manifest(folder)
    return frame, manifest_io.manifest_sha256(folder / manifest_io.MANIFEST_FILE)


def run_simulation(
    manifest: pd.DataFrame | str | os.PathLike[str],
    store_path: store.StorePath,
    subset_config: SubsetConfig,
    client: Client | None = None,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
    *,
    manifest_sha256: str | None = None,
) -> SimulationReport:
    """Simulate every incomplete block of a subset into its store.

    Args:
        manifest: the subset's manifest frame (rows in manifest order), or its folder
            (read with :func:`load_manifest`, which also gives ``manifest_sha256``).
        store_path: local path or fsspec URL of ``patterns.zarr``.
        subset_config: the subset (simulation settings, symmetry, seed).
        client: a Dask client (see :func:`xrdpipe.parallel.dask_client`); ``None`` runs
            the blocks one after another in this process.
        progress: called after each finished block.
        overwrite: replace a store made with another configuration.
        manifest_sha256: the manifest file's hash (``manifest_sha256(path)``); default: the
            file's hash when a folder is given, else a hash of the frame's ``cod_id`` and
            ``structure_json`` (:func:`frame_sha256`).

    Returns:
        Counts and wall time.

    Raises:
        StoreError: the store was made with another configuration (and not
            ``overwrite``), or blocks failed; completed blocks are kept, so rerunning
            resumes.
    """
    t0 = time.perf_counter()
    if not isinstance(manifest, pd.DataFrame):
        manifest, file_sha = load_manifest(manifest)
        manifest_sha256 = manifest_sha256 or file_sha
    manifest = manifest.reset_index(drop=True)
    missing = [c for c in ROW_COLUMNS if c not in manifest.columns]
    if missing:
        raise StoreError(f"manifest lacks columns {missing}; required {list(ROW_COLUMNS)}")
    sim = subset_config.simulation
    url = _store_url(store_path)
    sha = manifest_sha256 or frame_sha256(manifest)
    fingerprint = store.config_fingerprint(subset_config, peaks.SIMULATOR_VERSION, sha)
    n_peaks: int | None = None
    if not overwrite and store.store_exists(url):
        attrs = store.open_store(url).attrs
        if attrs.get("fingerprint") == fingerprint:
            n_peaks = int(attrs["n_peaks"])
    if n_peaks is None:
        n_peaks = peak_axis_length(manifest, sim)
    store.create_store(
        url,
        manifest,
        n_peaks,
        subset_config,
        simulator_version=peaks.SIMULATOR_VERSION,
        manifest_sha256=sha,
        overwrite=overwrite,
    )
    done = store.completed_materials(url)
    blocks = plan_blocks(len(manifest), sim.materials_per_chunk)
    todo = [(a, b) for a, b in blocks if not done[a:b].all()]
    rows = manifest.loc[:, list(ROW_COLUMNS)]

    def task_args(a: int, b: int) -> tuple[Any, ...]:
        block_rows = rows.iloc[a:b].to_dict("records")
        return (url, block_rows, a, b, sim, subset_config.seed, n_peaks)

    reports: list[BlockReport] = []
    failures: list[tuple[int, int, BaseException]] = []

    def finished(report: BlockReport) -> None:
        reports.append(report)
        if progress is not None:
            progress(report, len(reports) + len(failures), len(todo))

    if client is None:
        for a, b in todo:
            try:
                report = simulate_block(*task_args(a, b))
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                failures.append((a, b, exc))
                continue
            finished(report)
    else:
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        # Largest blocks first (Dask runs higher priorities first): the long ones do not
        # end up alone at the tail while the other workers idle.
        costs = block_costs(manifest, todo)
        by_cost = sorted(range(len(todo)), key=lambda i: -costs[i])
        rank = {todo[i]: len(todo) - r for r, i in enumerate(by_cost)}
        futures = {
            client.submit(
                simulate_block,
                *task_args(a, b),
                key=f"simulate-block-{a}-{b}-{token}",
                priority=rank[(a, b)],
            ): (a, b)
            for a, b in (todo[i] for i in by_cost)  # submitted largest first as well
        }
        try:
            for future in as_completed(list(futures), loop=client.loop):
                a, b = futures[future]
                try:
                    report = future.result()
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    failures.append((a, b, exc))
                    continue
                finished(report)
        finally:
            client.cancel([f for f in futures if not f.done()])
    if failures:
        listed = ", ".join(f"[{a}, {b})" for a, b, _ in failures[:10])
        raise StoreError(
            f"{len(failures)} of {len(todo)} blocks failed ({listed}): "
            f"{type(failures[0][2]).__name__}: {failures[0][2]}. "
            "Completed blocks are kept; run again to resume."
        ) from failures[0][2]
    quarantined: dict[str, str] = {}
    for report in reports:
        quarantined.update(report.quarantined)
    return SimulationReport(
        store_path=url,
        fingerprint=fingerprint,
        n_materials=len(manifest),
        n_peaks=n_peaks,
        n_blocks=len(blocks),
        blocks_submitted=len(todo),
        blocks_skipped=len(blocks) - len(todo),
        simulated=sum(r.simulated for r in reports),
        skipped=sum(b - a for a, b in blocks) - sum(b - a for a, b in todo),
        quarantined=quarantined,
        wall_s=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class SubsetSimulation:
    """What :func:`simulate_subset` did: the peak store's run and the profiles' group."""

    report: SimulationReport
    profiles: str

    def as_dict(self) -> dict[str, Any]:
        """What the simulate flow returns."""
        return {
            "store": self.report.store_path,
            "simulated": self.report.simulated,
            "blocks_computed": self.report.blocks_submitted,
            "blocks_skipped": self.report.blocks_skipped,
            "quarantined": self.report.quarantined,
            "profiles": self.profiles,
        }

    def summary(self) -> str:
        """A few lines for people."""
        r = self.report
        return (
            f"single-phase profiles: {r.store_path}/{self.profiles}\n"
            f"store {r.store_path}: {r.n_materials} materials, peak axis {r.n_peaks}\n"
            f"  blocks computed {r.blocks_submitted}, already complete {r.blocks_skipped}\n"
            f"  simulated {r.simulated}, quarantined {len(r.quarantined)}"
            + "".join(f"\n    {cod_id}: {why}" for cod_id, why in r.quarantined.items())
            + f"\n  wall time {r.wall_s:.1f} s"
        )


def simulate_subset(
    settings: Settings,
    subset_name: str,
    subset_config: SubsetConfig,
    *,
    overwrite: bool = False,
    on_block: ProgressCallback | None = None,
    on_profiles: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> SubsetSimulation:
    """The simulate stage of a fetched subset (what the CLI and the simulate flow call).

    :func:`run_simulation` on a Dask client (:func:`xrdpipe.parallel.dask_client`), then
    :func:`~xrdpipe.patterns.datasets.render_store_profiles` with the subset's peak shape.

    Args:
        settings: site settings (data directory, store root, Dask).
        subset_name: the subset's catalog name.
        subset_config: its config.
        overwrite: replace a store made with another configuration.
        on_block: called after each finished block (see :data:`ProgressCallback`).
        on_profiles: called as ``on_profiles(done, total)`` after each rendered block.
        log: progress lines (the Dask scheduler's address).
    """
    from xrdpipe.parallel import dask_client
    from xrdpipe.patterns.datasets import render_store_profiles

    folder = settings.subset_dir(subset_name)
    if not (folder / "manifest.parquet").is_file():
        raise StoreError(
            f"no manifest at {folder / 'manifest.parquet'}: run `xrdpipe fetch {subset_name}` first"
        )
    store_path = settings.store_path(subset_name)
    with dask_client(settings) as client:
        if log is not None:
            log(f"Dask scheduler: {client.scheduler.address}")
        report = run_simulation(
            folder, store_path, subset_config, client=client, progress=on_block, overwrite=overwrite
        )
    key = render_store_profiles(store_path, subset_config.profile, on_profiles)
    return SubsetSimulation(report, key)
