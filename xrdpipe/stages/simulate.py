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
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from xrdpipe.config import Settings, SimulationConfig, SubsetConfig
from xrdpipe.diffraction import peaks
from xrdpipe.errors import StoreError, StructureError, raise_for_failures
from xrdpipe.stages.simulate_block import (
    ROW_COLUMNS,
    BlockReport,
    rebuild_structure,
    simulate_block,
)
from xrdpipe.store import layout as store
from xrdpipe.structures import manifest as manifest_io

if TYPE_CHECKING:
    from distributed import Client


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
    raise_for_failures(failures, len(todo), "blocks", "Completed blocks")
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
