"""The synthesize stage: a synthetic subset's manifest, generated in parallel on Dask.

The synthetic counterpart of the fetch stage (``source: synthetic``): it writes
``<data>/<subset>/manifest.parquet`` and ``quarantine.parquet``, so the simulate stage turns
the manifest into a pattern store exactly as it does a COD subset's.

1. The structure indices ``0 .. n_structures - 1`` are cut into chunks of
   ``structures_per_task``; each chunk is one task (:func:`synthesize_chunk`), which draws
   its structures (:func:`xrdpipe.structures.synthetic.synthesize_structure`, each seeded
   by the subset seed and its own index only) and writes its rows to a chunk file,
   atomically, before it returns.
2. :func:`synthesize_manifest` skips chunks whose file is already there (a run that was
   killed resumes), gathers the rows, and writes the manifest and the quarantine once, at
   the end, atomically; then it removes the chunk files.

A chunk's rows depend on the indices, the seed and the settings only: a task that Dask
reruns after a worker died writes the same bytes, and the manifest is the same whatever
the number of workers or the chunk size.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from xrdpipe.config import Settings, SymmetrySettings
from xrdpipe.errors import raise_for_failures
from xrdpipe.files import write_atomic
from xrdpipe.structures.manifest import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    ManifestResult,
    write_manifest,
)
from xrdpipe.structures.phase_files import material_sort_key
from xrdpipe.structures.synthetic import (
    SYNTHETIC_COLUMNS,
    SyntheticConfig,
    pyxtal_version,
    synthesize_structure,
)

if TYPE_CHECKING:
    from distributed import Client

CHUNK_DIR = "synthetic-chunks"
"""Folder (in the subset folder) of the finished chunks of a run in progress."""

SYNTHETIC_MANIFEST_COLUMNS = (*MANIFEST_COLUMNS, *SYNTHETIC_COLUMNS)
"""Columns of a synthetic ``manifest.parquet``, in order."""

SYNTHETIC_QUARANTINE_COLUMNS = (
    *QUARANTINE_COLUMNS,
    *(c for c in SYNTHETIC_COLUMNS if c not in ("spglib_wyckoff_letters", "symmetry_changed")),
)
"""Columns of a synthetic ``quarantine.parquet``: the reason, then the draw's parameters."""


@dataclass(frozen=True)
class ChunkResult:
    """The rows of one chunk of structure indices ``[start, stop)``."""

    start: int
    stop: int
    manifest: pd.DataFrame
    quarantine: pd.DataFrame
    seconds: float = 0.0


@dataclass
class SynthesisReport:
    """What a synthesize run did, for logs and the CLI summary.

    Attributes:
        folder: the subset folder.
        n_draws: structure indices drawn.
        n_kept: rows of the manifest.
        n_symmetry_changed: kept rows whose spglib space group is not the requested one.
        quarantine_counts: ``stage/reason -> count``.
        crystal_systems: kept rows per spglib crystal system.
        chunks_submitted: chunks computed by this run.
        chunks_resumed: chunks read back from an interrupted run.
        wall_s: wall time, seconds.
    """

    folder: Path
    n_draws: int = 0
    n_kept: int = 0
    n_symmetry_changed: int = 0
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    crystal_systems: dict[str, int] = field(default_factory=dict)
    chunks_submitted: int = 0
    chunks_resumed: int = 0
    wall_s: float = 0.0

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"synthetic subset: {self.n_draws} draws, kept {self.n_kept} "
            f"({self.n_symmetry_changed} with a space group other than requested)",
            "  crystal systems: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.crystal_systems.items())),
        ]
        if self.quarantine_counts:
            lines.append("  quarantined:")
            for reason, count in sorted(self.quarantine_counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {count:5d}  {reason}")
        lines.append(f"  manifest: {self.folder / 'manifest.parquet'} ({self.wall_s:.1f} s)")
        return "\n".join(lines)


Progress = Callable[[ChunkResult, int, int], None]
"""Called after each finished chunk with (result, chunks done, chunks submitted)."""


def plan_chunks(n_structures: int, per_task: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges of structure indices, ``per_task`` each."""
    if per_task < 1:
        raise ValueError(f"structures_per_task={per_task!r} must be >= 1")
    return [(a, min(a + per_task, n_structures)) for a in range(0, n_structures, per_task)]


def run_fingerprint(config: SyntheticConfig, seed: int, symmetry: SymmetrySettings) -> str:
    """A short hash of everything a chunk's rows depend on (its chunk files' folder)."""
    blob = json.dumps(
        {
            "config": config.model_dump(mode="json"),
            "seed": seed,
            "symmetry": symmetry.model_dump(mode="json"),
            "pyxtal": pyxtal_version(),
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _frames(rows: list[dict], quarantine: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    manifest = pd.DataFrame(rows, columns=list(SYNTHETIC_MANIFEST_COLUMNS))
    manifest["dimensionality"] = manifest["dimensionality"].astype("Int64")
    table = pd.DataFrame(quarantine, columns=list(SYNTHETIC_QUARANTINE_COLUMNS))
    return manifest, table


def _chunk_paths(chunk_dir: Path, start: int, stop: int) -> tuple[Path, Path]:
    stem = f"chunk-{start:08d}-{stop:08d}"
    return chunk_dir / f"{stem}.manifest.parquet", chunk_dir / f"{stem}.quarantine.parquet"


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


def synthesize_chunk(
    start: int,
    stop: int,
    seed: int,
    config: SyntheticConfig,
    symmetry: SymmetrySettings,
    chunk_dir: str | None = None,
) -> ChunkResult:
    """Draw structures ``[start, stop)``; write their rows to ``chunk_dir`` if given.

    The quarantine file is written first, the manifest file last: a chunk is finished
    when its manifest file exists.

    Args:
        start: first structure index.
        stop: one past the last.
        seed: the subset seed.
        config: the synthetic settings.
        symmetry: the subset's spglib tolerances.
        chunk_dir: folder of the run's chunk files (``None``: keep them in memory only).

    Returns:
        The chunk's manifest and quarantine rows.
    """
    t0 = time.perf_counter()
    rows: list[dict] = []
    quarantine: list[dict] = []
    for index in range(start, stop):
        row, rejected = synthesize_structure(
            index, seed, config, symmetry.symprec, symmetry.angle_tolerance
        )
        if row is not None:
            rows.append(row)
        else:
            quarantine.append(rejected)
    manifest, table = _frames(rows, quarantine)
    if chunk_dir is not None:
        manifest_path, quarantine_path = _chunk_paths(Path(chunk_dir), start, stop)
        _write_atomic(table, quarantine_path)
        _write_atomic(manifest, manifest_path)
    return ChunkResult(start, stop, manifest, table, time.perf_counter() - t0)


def _read_chunk(chunk_dir: Path, start: int, stop: int) -> ChunkResult | None:
    manifest_path, quarantine_path = _chunk_paths(chunk_dir, start, stop)
    if not (manifest_path.is_file() and quarantine_path.is_file()):
        return None
    try:
        manifest = pd.read_parquet(manifest_path)
        table = pd.read_parquet(quarantine_path)
    except Exception:  # noqa: BLE001 - an unreadable chunk file is simply recomputed
        return None
    manifest["dimensionality"] = manifest["dimensionality"].astype("Int64")
    for frame in (manifest, table):  # a chunk written before the column: no such draw
        if "pseudo_symmetric" not in frame:
            frame["pseudo_symmetric"] = False
    return ChunkResult(start, stop, manifest, table)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [material_sort_key(v) for v in frame["cod_id"]]
    order = sorted(range(len(frame)), key=keys.__getitem__)
    return frame.iloc[order].reset_index(drop=True)


def synthesize_manifest(
    config: SyntheticConfig,
    seed: int,
    folder: Path | str,
    client: Client | None = None,
    symmetry: SymmetrySettings | None = None,
    progress: Progress | None = None,
) -> SynthesisReport:
    """Generate a synthetic subset and write its ``manifest.parquet`` and quarantine.

    Args:
        config: the synthetic settings.
        seed: the subset seed (structure ``i`` is seeded by ``(seed, i)``).
        folder: the subset folder (``<data_dir>/<subset>``; created if missing).
        client: a Dask client (:func:`xrdpipe.parallel.dask_client`), one task per chunk;
            ``None`` runs the chunks here, one after the other.
        symmetry: spglib tolerances of the labels (default 0.1 angstrom, 5 degrees).
        progress: called after each chunk.

    Returns:
        Counts and wall time.

    Raises:
        StoreError: chunks failed; the finished ones are kept, so running again resumes.
    """
    t0 = time.perf_counter()
    symmetry = symmetry or SymmetrySettings()
    folder = Path(folder)
    chunk_root = folder / CHUNK_DIR
    chunk_dir = chunk_root / run_fingerprint(config, seed, symmetry)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    chunks = plan_chunks(config.n_structures, config.structures_per_task)
    results: dict[tuple[int, int], ChunkResult] = {}
    for a, b in chunks:
        found = _read_chunk(chunk_dir, a, b)
        if found is not None:
            results[(a, b)] = found
    resumed = len(results)
    todo = [c for c in chunks if c not in results]
    failures: list[tuple[int, int, BaseException]] = []

    def finished(result: ChunkResult) -> None:
        results[(result.start, result.stop)] = result
        if progress is not None:
            progress(result, len(results) - resumed + len(failures), len(todo))

    args = (seed, config, symmetry, str(chunk_dir))
    if client is None:
        for a, b in todo:
            try:
                finished(synthesize_chunk(a, b, *args))
            except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                failures.append((a, b, exc))
    else:
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                synthesize_chunk, a, b, *args, key=f"synthesize-{a}-{b}-{token}", pure=False
            ): (a, b)
            for a, b in todo
        }
        try:
            for future in as_completed(list(futures), loop=client.loop):
                a, b = futures[future]
                try:
                    finished(future.result())
                except Exception as exc:  # noqa: BLE001 - collected and re-raised below
                    failures.append((a, b, exc))
        finally:
            client.cancel([f for f in futures if not f.done()])
    raise_for_failures(failures, len(todo), "synthetic chunks", "Finished chunks")
    ordered = [results[c] for c in chunks]
    manifest = _sorted(pd.concat([r.manifest for r in ordered], ignore_index=True))
    quarantine = _sorted(pd.concat([r.quarantine for r in ordered], ignore_index=True))
    manifest["dimensionality"] = manifest["dimensionality"].astype("Int64")
    write_manifest(ManifestResult(manifest=manifest, quarantine=quarantine), folder)
    shutil.rmtree(chunk_root, ignore_errors=True)
    counts = quarantine.groupby(["stage", "reason"]).size() if len(quarantine) else {}
    return SynthesisReport(
        folder=folder,
        n_draws=config.n_structures,
        n_kept=len(manifest),
        n_symmetry_changed=int(manifest["symmetry_changed"].astype(bool).sum()),
        quarantine_counts={f"{s}/{r}": int(n) for (s, r), n in dict(counts).items()},
        crystal_systems={
            str(k): int(v) for k, v in manifest["crystal_system"].value_counts().items()
        },
        chunks_submitted=len(todo),
        chunks_resumed=resumed,
        wall_s=time.perf_counter() - t0,
    )


def synthesize_subset(
    subset_name: str,
    config: SyntheticConfig,
    settings: Settings,
    seed: int = 0,
    symmetry: SymmetrySettings | None = None,
    n_workers: int | None = None,
    progress: Progress | None = None,
) -> SynthesisReport:
    """The whole stage for one subset on a Dask cluster of :func:`xrdpipe.parallel.dask_client`.

    Args:
        subset_name: the subset (its folder is ``settings.subset_dir(subset_name)``).
        config: the subset's synthetic settings.
        settings: site settings (data directory, Dask scheduler or workers).
        seed: the subset seed.
        symmetry: the subset's spglib tolerances.
        n_workers: worker processes of a local cluster (default: the settings').
        progress: called after each chunk.

    Returns:
        What :func:`synthesize_manifest` returned.
    """
    from xrdpipe.parallel import dask_client

    with dask_client(settings, n_workers=n_workers) as client:
        return synthesize_manifest(
            config, seed, settings.subset_dir(subset_name), client, symmetry, progress
        )


__all__ = [
    "CHUNK_DIR",
    "SYNTHETIC_MANIFEST_COLUMNS",
    "SYNTHETIC_QUARANTINE_COLUMNS",
    "ChunkResult",
    "SynthesisReport",
    "plan_chunks",
    "run_fingerprint",
    "synthesize_chunk",
    "synthesize_manifest",
    "synthesize_subset",
]
