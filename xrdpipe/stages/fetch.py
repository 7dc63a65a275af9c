"""The fetch stage: a COD subset from its source to a validated structure manifest.

Steps (each a plain function, so the Prefect flow and the CLI call the same code):

1. :func:`find_candidates` asks the subset's source (COD's REST API, a local mirror, or
   the COD CIFs shipped by the ``crystals`` package) for the entries matching its query,
   and drops those whose formula already fails the subset's element rules; a lab's phase
   set (``source: phases``) offers every CIF file it names, each one phase.
2. :func:`acquire_cifs` downloads (or copies) their CIFs into ``<data>/<subset>/cif/``,
   atomically and with a sha256 ledger, so an interrupted fetch resumes.
3. :func:`build_subset_manifest` parses, analyses and filters them with pymatgen and
   writes ``manifest.parquet`` (the sampled materials) and ``quarantine.parquet``.

A synthetic subset (``source: synthetic``) has no CIFs: :func:`fetch_synthetic` runs the
synthesize stage (:mod:`xrdpipe.stages.synthesize`) instead and writes the same two files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xrdpipe.cod.cache import cif_problem, utc_now_iso
from xrdpipe.cod.client import CodClient, CodRecord, DownloadResult
from xrdpipe.cod.mirror import CodMirror, package_mirror_dir
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.diffraction.similarity import (
    SIMILARITY_THRESHOLD,
    IndistinguishablePhasesWarning,
    similar_phases,
)
from xrdpipe.structures.manifest import (
    CifEntry,
    build_manifest,
    sample_manifest,
    write_manifest,
)
from xrdpipe.structures.phase_files import (
    PhaseFile,
    discover_phase_files,
    material_sort_key,
)

_ELEMENT = re.compile(r"^([A-Z][a-z]?)")

Progress = Callable[[object], None]


@dataclass(frozen=True)
class Candidates:
    """Entries a subset's source offers, after the cheap formula-level rules.

    Attributes:
        source: where they come from (``cod:<url>``, ``mirror:<dir>``, ``package:crystals``).
        cod_ids: ids to acquire, sorted numerically.
        rejected: (cod_id, reason) pairs dropped from the formula alone.
        total: how many entries the query returned.
    """

    source: str
    cod_ids: tuple[str, ...]
    rejected: tuple[tuple[str, str], ...] = ()
    total: int = 0


@dataclass
class FetchReport:
    """What a fetch did, for logs and the CLI summary."""

    subset: str
    source: str
    folder: Path
    n_candidates: int = 0
    n_downloaded: int = 0
    n_cached: int = 0
    n_failed: int = 0
    n_kept: int = 0
    n_sampled: int = 0
    quarantine_counts: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    similar_phases: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"subset {self.subset!r} from {self.source}",
            f"  candidates {self.n_candidates}: downloaded {self.n_downloaded}, "
            f"cached {self.n_cached}, failed {self.n_failed}",
            f"  kept {self.n_kept}, sampled into the manifest {self.n_sampled}",
        ]
        if self.quarantine_counts:
            lines.append("  quarantined:")
            for reason, count in sorted(self.quarantine_counts.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {count:5d}  {reason}")
        for pair in self.similar_phases:
            lines.append(
                f"  indistinguishable? {pair['first']!r} and {pair['second']!r}: pattern "
                f"similarity {pair['similarity']:.3f}"
            )
        lines.append(f"  manifest: {self.folder / 'manifest.parquet'} ({self.wall_s:.1f} s)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """What the fetch flow returns: the manifest's path and the counts."""
        return {
            "subset": self.subset,
            "manifest": str(self.folder / "manifest.parquet"),
            "kept": self.n_kept,
            "sampled": self.n_sampled,
            "quarantined": self.quarantine_counts,
            "similar_phases": self.similar_phases,
        }


def formula_elements(formula: str) -> set[str]:
    """Element symbols of a COD formula such as ``"- C5 H17 Al N2 O8 P2 -"``."""
    out = set()
    for token in formula.replace("-", " ").split():
        match = _ELEMENT.match(token)
        if match:
            out.add(match.group(1))
    return out


def _formula_rejection(record: CodRecord, subset: SubsetConfig) -> str | None:
    if not record.formula:
        return None
    elements = formula_elements(record.formula)
    rules = subset.filters
    if rules.exclude_organic and {"C", "H"} <= elements:
        return "organic"
    if rules.allowed_elements is not None and not elements <= set(rules.allowed_elements):
        return "element_not_allowed"
    if elements & set(rules.excluded_elements):
        return "element_excluded"
    return None


def _source_label(subset: SubsetConfig, settings: Settings) -> str:
    if subset.source == "package":
        return "package:crystals"
    if subset.source == "mirror":
        return f"mirror:{subset.mirror_dir}"
    if subset.source == "phases":
        return f"phases:{subset.phases}"
    return f"cod:{subset.cod_url or settings.cod_url}"


def _mirror(subset: SubsetConfig) -> CodMirror:
    root = package_mirror_dir() if subset.source == "package" else subset.mirror_dir
    assert root is not None, "a mirror subset always has mirror_dir (validated in config)"
    return CodMirror(Path(root))


def find_candidates(subset: SubsetConfig, settings: Settings) -> Candidates:
    """Query the subset's source and apply the formula-level filter rules.

    Raises:
        CodUnavailableError: COD did not answer after its retries.
    """
    if subset.source == "phases":
        phases = discover_phase_files(subset.phases)  # type: ignore[arg-type]
        ids = tuple(p.material_id for p in phases)
        return Candidates(_source_label(subset, settings), ids, (), len(ids))
    if subset.source == "cod":
        client = CodClient.from_settings(settings, base_url=subset.cod_url)
        records = client.search(subset.query)
    else:
        records = _mirror(subset).search(subset.query)
    keep, rejected = [], []
    for record in records:
        reason = _formula_rejection(record, subset)
        if reason is None:
            keep.append(record.cod_id)
        else:
            rejected.append((record.cod_id, reason))
    ids = sorted(set(keep), key=material_sort_key)
    if subset.candidate_pool is not None and len(ids) > subset.candidate_pool:
        rng = np.random.default_rng(subset.seed)
        pool = rng.choice(len(ids), size=subset.candidate_pool, replace=False)
        ids = [ids[i] for i in sorted(pool)]
    ids = tuple(ids)
    return Candidates(_source_label(subset, settings), ids, tuple(rejected), len(records))


def acquire_cifs(
    subset: SubsetConfig,
    settings: Settings,
    cod_ids: tuple[str, ...] | list[str],
    cif_dir: Path,
    progress: Progress | None = None,
) -> list[DownloadResult]:
    """Download (or copy from a mirror) the CIFs of ``cod_ids`` into ``cif_dir``.

    Already cached files with a matching sha256 are not fetched again.
    """
    cif_dir.mkdir(parents=True, exist_ok=True)
    if subset.source == "phases":
        wanted = set(cod_ids)
        phases = [p for p in discover_phase_files(subset.phases) if p.material_id in wanted]  # type: ignore[arg-type]
        return [copy_phase_file(phase, cif_dir, progress) for phase in phases]
    if subset.source == "cod":
        client = CodClient.from_settings(settings, base_url=subset.cod_url)
        return client.download(list(cod_ids), cif_dir, progress=progress)
    return _mirror(subset).copy_into(list(cod_ids), cif_dir, progress=progress)


def build_subset_manifest(
    subset_name: str,
    subset: SubsetConfig,
    source: str,
    downloads: list[DownloadResult],
    folder: Path,
    rejected: tuple[tuple[str, str], ...] = (),
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse, analyse, filter and sample; write ``manifest.parquet`` and ``quarantine.parquet``.

    Returns:
        The sampled manifest and the quarantine table (download failures, formula-level
        rejections and every parse, symmetry and filter rejection).
    """
    entries = [
        CifEntry(d.cod_id, d.path, d.sha256, source, d.fetched_at)
        for d in downloads
        if d.status != "failed" and d.path is not None
    ]
    result = build_manifest(entries, subset, progress=progress)
    extra = [
        {
            "cod_id": d.cod_id,
            "stage": "download",
            "reason": "download_failed",
            "detail": d.error or "",
            "source": source,
        }
        for d in downloads
        if d.status == "failed"
    ] + [
        {
            "cod_id": cod_id,
            "stage": "filter",
            "reason": reason,
            "detail": "from the COD formula",
            "source": source,
        }
        for cod_id, reason in rejected
    ]
    quarantine = result.quarantine
    if extra:
        quarantine = pd.concat([quarantine, pd.DataFrame(extra)], ignore_index=True)
        quarantine = quarantine.sort_values(
            "cod_id", key=lambda s: s.map(material_sort_key), kind="stable"
        ).reset_index(drop=True)
    kept = result.manifest
    if subset.sample_size is not None:
        sampled = sample_manifest(kept, subset.sample_size, subset.stratify_by, subset.seed)
    else:
        sampled = kept
    if subset.source == "phases":
        names = {p.material_id: p.name for p in discover_phase_files(subset.phases)}  # type: ignore[arg-type]
        sampled = sampled.assign(phase_name=sampled["cod_id"].map(names))
        quarantine = quarantine.assign(phase_name=quarantine["cod_id"].map(names))
    result = type(result)(manifest=sampled, quarantine=quarantine)
    write_manifest(result, folder)
    write_similar_phases(sampled, subset, folder)
    return kept, quarantine


SIMILAR_PHASES_FILE = "similar_phases.json"
"""Beside the manifest: a phase set's pairs with near-identical clean patterns."""


def write_similar_phases(manifest: pd.DataFrame, subset: SubsetConfig, folder: Path) -> list:
    """Warn about, and record, a phase set's pairs whose clean patterns are alike.

    Only for ``source: phases`` (every pair is compared: a lab's few candidates); other
    sources write nothing (a stale record is removed). Each pair warns
    (:class:`~xrdpipe.diffraction.similarity.IndistinguishablePhasesWarning`) naming both
    phases and their similarity, at the subset's wavelength and two-theta range.

    Returns:
        The pairs as dicts (``first``, ``second``, ``similarity``, ``relative_scale``).
    """
    from xrdpipe.structures.manifest import structure_from_json

    record = folder / SIMILAR_PHASES_FILE
    record.unlink(missing_ok=True)
    if subset.source != "phases" or len(manifest) < 2:
        return []
    sim = subset.simulation
    names = manifest["phase_name"].astype(str).tolist()
    structures = [structure_from_json(s) for s in manifest["structure_json"]]
    pairs = similar_phases(names, structures, sim.wavelength_angstrom, sim.two_theta_range)
    rows = [vars(p) for p in pairs]
    for p in pairs:
        warnings.warn(
            f"phases {p.first!r} and {p.second!r} have clean patterns {p.similarity:.3f} alike "
            f"(threshold {SIMILARITY_THRESHOLD}, after a lattice scaling of "
            f"{p.relative_scale:.4f}): a model or a refinement can hardly tell them apart",
            IndistinguishablePhasesWarning,
            stacklevel=2,
        )
    record.write_text(json.dumps({"threshold": SIMILARITY_THRESHOLD, "pairs": rows}, indent=1))
    return rows


def copy_phase_file(
    phase: PhaseFile, cif_dir: Path, progress: Progress | None = None
) -> DownloadResult:
    """Copy a phase's CIF to ``<cif_dir>/<material_id>.cif`` (atomically), like a download.

    A file that is not a CIF at all fails here, named with what is wrong; a CIF that does not
    parse is quarantined later by the manifest, with its reason.
    """
    url = phase.path.resolve().as_uri()
    target = cif_dir / f"{phase.material_id}.cif"
    try:
        data = phase.path.read_bytes()
    except OSError as exc:
        data, problem = b"", f"cannot read {phase.path}: {exc}"
    else:
        problem = cif_problem(data)
    if problem is not None:
        result = DownloadResult(
            phase.material_id, None, None, "failed", f"{phase.path.name}: {problem}", url,
            utc_now_iso(),
        )  # fmt: skip
    else:
        digest = hashlib.sha256(data).hexdigest()
        same = target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == digest
        if not same:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        status = "cached" if same else "downloaded"
        result = DownloadResult(phase.material_id, target, digest, status, None, url, utc_now_iso())
    if progress is not None:
        progress(result)
    return result


def fetch_subset(
    subset_name: str,
    subset: SubsetConfig,
    settings: Settings,
    progress: Callable[[str, int, int], None] | None = None,
) -> FetchReport:
    """Run the whole fetch stage for one subset (the CLI's path; the flow splits it in tasks).

    Args:
        subset_name: the subset's catalog name.
        subset: its resolved config.
        settings: site settings (data directory, COD client).
        progress: called as ``progress(what, done, total)`` after each CIF (``"CIFs"``) and
            each parsed structure (``"structures"``).
    """
    if subset.source == "synthetic":
        return fetch_synthetic(subset_name, subset, settings, progress)
    start = time.perf_counter()
    folder = settings.subset_dir(subset_name)
    candidates = find_candidates(subset, settings)
    total = len(candidates.cod_ids)
    done = [0]

    def downloaded(_: object) -> None:
        done[0] += 1
        if progress is not None:
            progress("CIFs", done[0], total)

    downloads = acquire_cifs(subset, settings, candidates.cod_ids, folder / "cif", downloaded)
    kept, quarantine = build_subset_manifest(
        subset_name,
        subset,
        candidates.source,
        downloads,
        folder,
        candidates.rejected,
        progress=None if progress is None else lambda d, t: progress("structures", d, t),
    )
    return make_report(subset_name, candidates, downloads, kept, quarantine, folder, start)


def fetch_synthetic(
    subset_name: str,
    subset: SubsetConfig,
    settings: Settings,
    progress: Callable[[str, int, int], None] | None = None,
    n_workers: int | None = None,
) -> FetchReport:
    """The fetch stage of a ``source: synthetic`` subset: the synthesize stage on Dask.

    Draws the subset's ``synthetic.n_structures`` crystals in parallel, resumably, failed
    draws quarantined with their reasons (:func:`xrdpipe.stages.synthesize.synthesize_subset`),
    and writes the usual ``manifest.parquet`` (with each structure's generation parameters and
    Wyckoff letters) and ``quarantine.parquet``.

    Args:
        subset_name: the subset's catalog name.
        subset: its resolved config (``source: synthetic``).
        settings: site settings (data directory, Dask).
        progress: called as ``progress("synthetic chunks", done, total)`` after each chunk
            of ``structures_per_task`` draws.
        n_workers: worker processes of a local cluster (default: the settings').
    """
    from xrdpipe.stages.synthesize import synthesize_subset

    if subset.synthetic is None:
        raise ValueError(f"subset {subset_name!r} has source {subset.source!r}, not 'synthetic'")
    config = subset.synthetic

    def chunk_done(_: object, done: int, todo: int) -> None:
        if progress is not None:
            progress("synthetic chunks", done, todo)

    report = synthesize_subset(
        subset_name, config, settings, subset.seed, subset.symmetry, n_workers, chunk_done
    )
    return FetchReport(
        subset=subset_name,
        source=f"synthetic:seed={subset.seed}",
        folder=report.folder,
        n_candidates=report.n_draws,
        n_kept=report.n_kept,
        n_sampled=report.n_kept,
        quarantine_counts=report.quarantine_counts,
        wall_s=report.wall_s,
    )


def make_report(
    subset_name: str,
    candidates: Candidates,
    downloads: list[DownloadResult],
    kept: pd.DataFrame,
    quarantine: pd.DataFrame,
    folder: Path,
    start: float,
) -> FetchReport:
    """Count what a fetch did."""
    statuses = pd.Series([d.status for d in downloads], dtype="object")
    manifest = pd.read_parquet(folder / "manifest.parquet", columns=["cod_id"])
    counts = quarantine.groupby(["stage", "reason"]).size() if len(quarantine) else []
    similar = folder / SIMILAR_PHASES_FILE
    pairs = json.loads(similar.read_text())["pairs"] if similar.is_file() else []
    return FetchReport(
        subset=subset_name,
        source=candidates.source,
        folder=folder,
        n_candidates=candidates.total,
        n_downloaded=int((statuses == "downloaded").sum()),
        n_cached=int((statuses == "cached").sum()),
        n_failed=int((statuses == "failed").sum()),
        n_kept=len(kept),
        n_sampled=len(manifest),
        quarantine_counts={f"{s}/{r}": int(n) for (s, r), n in dict(counts).items()}
        if len(quarantine)
        else {},
        wall_s=time.perf_counter() - start,
        similar_phases=pairs,
    )


__all__ = [
    "Candidates",
    "FetchReport",
    "acquire_cifs",
    "build_subset_manifest",
    "fetch_subset",
    "fetch_synthetic",
    "find_candidates",
    "formula_elements",
    "make_report",
]
