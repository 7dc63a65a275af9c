"""From fetched COD CIFs to a subset's manifest and quarantine tables.

:func:`build_manifest` runs each entry through, cheapest test first:

1. ``read``: the file's bytes (and their SHA-256 against the fetch record).
2. ``size``: the raw-text site bound (:func:`~xrdpipe.structures.parse.estimate_site_count`)
   against ``filters.max_sites``, before pymatgen ever sees a huge cell.
3. ``parse``: pymatgen ``CifParser`` (occupancy tolerance 1.05), first structure.
4. ``filter``: partial occupancy, organic, polymer, elements, scattering factors
   (:func:`~xrdpipe.structures.filters.structure_rejection`).
5. ``symmetry``: spglib labels (:func:`~xrdpipe.structures.symmetry.analyse_symmetry`).
6. ``dedupe``: one entry per reduced formula and space group (lowest COD id).
7. dimensionality of every kept entry.

:func:`sample_manifest` then draws the subset's seeded (optionally stratified) sample.

One bad entry never stops the run: every failure becomes a quarantine row
(``cod_id, stage, reason, detail, source``). Entries left out by the sample are not
quarantined; they are simply not in the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from monty.json import MontyEncoder
from pymatgen.core import Structure

from xrdpipe.config import LATTICE_SYSTEMS, SubsetConfig
from xrdpipe.errors import StructureError
from xrdpipe.files import write_atomic
from xrdpipe.structures.displacement import attach_displacements
from xrdpipe.structures.filters import deduplicate, element_symbols, structure_rejection
from xrdpipe.structures.parse import cif_names, estimate_site_count, parse_structure
from xrdpipe.structures.phase_files import material_sort_key
from xrdpipe.structures.symmetry import analyse_symmetry, structural_dimensionality

MANIFEST_FILE = "manifest.parquet"
QUARANTINE_FILE = "quarantine.parquet"

MANIFEST_COLUMNS = (
    "cod_id",
    "formula",
    "reduced_formula",
    "elements",
    "n_elements",
    "n_sites",
    "space_group_number",
    "space_group_symbol",
    "crystal_system",
    "lattice_system",
    "a",
    "b",
    "c",
    "alpha",
    "beta",
    "gamma",
    "volume",
    "density",
    "has_partial_occupancy",
    "dimensionality",
    "dimensionality_reason",
    "sha256",
    "source",
    "fetched_at",
    "structure_json",
)
"""Columns of ``manifest.parquet``, in order (see ``docs/structures.md``)."""

QUARANTINE_COLUMNS = ("cod_id", "stage", "reason", "detail", "source")
"""Columns of ``quarantine.parquet``."""

QUARANTINE_STAGES = ("read", "size", "parse", "symmetry", "filter", "dedupe", "sample")
"""Where an entry can be stopped. (``sample`` is reserved: not-drawn entries are not
quarantined.)"""

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each entry."""


@dataclass(frozen=True)
class CifEntry:
    """One fetched COD entry, as the fetch stage records it.

    Attributes:
        cod_id: the COD id, digits only.
        cif_path: where its CIF lies on disk.
        sha256: hex SHA-256 of the CIF file's bytes.
        source: where it came from: ``cod:<url>``, ``mirror:<path>`` or ``package:<name>``.
        fetched_at: ISO 8601 time of the fetch.
    """

    cod_id: str
    cif_path: Path
    sha256: str
    source: str
    fetched_at: str


@dataclass(frozen=True)
class ManifestResult:
    """The manifest (kept structures) and the quarantine (every rejection, with its reason)."""

    manifest: pd.DataFrame
    quarantine: pd.DataFrame


def _empty_manifest() -> pd.DataFrame:
    return pd.DataFrame({col: pd.Series(dtype=object) for col in MANIFEST_COLUMNS})


def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({col: pd.Series(dtype=str) for col in QUARANTINE_COLUMNS})


def _quarantine_row(entry: CifEntry, stage: str, reason: str, detail: str) -> dict[str, str]:
    assert stage in QUARANTINE_STAGES, f"{stage=} is not one of {QUARANTINE_STAGES}"
    return {
        "cod_id": entry.cod_id,
        "stage": stage,
        "reason": reason,
        "detail": detail,
        "source": entry.source,
    }


def structure_row(structure: Structure, entry: CifEntry, symprec: float, angle: float) -> dict:
    """The manifest row of one parsed, accepted structure (dimensionality filled later).

    Raises:
        StructureError: stage ``symmetry`` when spglib fails.
    """
    info = analyse_symmetry(structure, symprec=symprec, angle_tolerance=angle)
    lattice = structure.lattice
    elements = element_symbols(structure)
    return {
        "cod_id": entry.cod_id,
        "formula": structure.composition.formula,
        "reduced_formula": structure.composition.reduced_formula,
        "elements": ",".join(elements),
        "n_elements": len(elements),
        "n_sites": len(structure),
        "space_group_number": info.space_group_number,
        "space_group_symbol": info.space_group_symbol,
        "crystal_system": info.crystal_system,
        "lattice_system": info.lattice_system,
        "a": lattice.a,
        "b": lattice.b,
        "c": lattice.c,
        "alpha": lattice.alpha,
        "beta": lattice.beta,
        "gamma": lattice.gamma,
        "volume": lattice.volume,
        "density": float(structure.density),
        "has_partial_occupancy": not structure.is_ordered,
        "dimensionality": None,
        "dimensionality_reason": None,
        "sha256": entry.sha256,
        "source": entry.source,
        "fetched_at": entry.fetched_at,
        "structure_json": json.dumps(structure.as_dict(), cls=MontyEncoder),
    }


def structure_from_json(structure_json: str) -> Structure:
    """The structure of a manifest row, exactly as it was parsed."""
    return Structure.from_dict(json.loads(structure_json))


def _process_entry(
    entry: CifEntry, config: SubsetConfig, verify_sha256: bool
) -> tuple[dict | None, Structure | None, dict | None]:
    """One entry through read, size, parse, filter, symmetry: (row, structure, quarantine)."""
    filters = config.filters
    stage = "read"
    try:
        try:
            raw = Path(entry.cif_path).read_bytes()
        except OSError as exc:
            return None, None, _quarantine_row(entry, "read", "unreadable_file", str(exc))
        if verify_sha256 and hashlib.sha256(raw).hexdigest() != entry.sha256:
            detail = f"sha256 of {entry.cif_path} is not the recorded {entry.sha256}"
            return None, None, _quarantine_row(entry, "read", "sha256_mismatch", detail)
        text = raw.decode("utf-8", errors="replace")

        stage = "size"
        bound = estimate_site_count(text)
        if bound == 0:
            detail = "no data block has an _atom_site_ loop with coordinates"
            return None, None, _quarantine_row(entry, "parse", "no_atom_sites", detail)
        if bound > filters.max_sites:
            detail = f"site bound {bound} > max_sites {filters.max_sites}"
            return None, None, _quarantine_row(entry, "size", "too_many_sites", detail)

        stage = "parse"
        structure = parse_structure(text)
        if len(structure) > filters.max_sites:  # the bound is an upper bound: never here
            detail = f"{len(structure)} sites > max_sites {filters.max_sites}"
            return None, None, _quarantine_row(entry, "size", "too_many_sites", detail)

        stage = "filter"
        rejection = structure_rejection(structure, cif_names(text), filters)
        if rejection is not None:
            return None, None, _quarantine_row(entry, "filter", *rejection)

        if config.simulation.displacement == "cif":
            structure = attach_displacements(structure, text)  # per-site B, in structure_json
        stage = "symmetry"
        row = structure_row(
            structure, entry, config.symmetry.symprec, config.symmetry.angle_tolerance
        )
        return row, structure, None
    except StructureError as exc:
        return None, None, _quarantine_row(entry, exc.stage, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - one bad entry never stops the run
        detail = f"{type(exc).__name__}: {exc}"[:500]
        return None, None, _quarantine_row(entry, stage, "unexpected_error", detail)


def _sorted_by_id(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    keys = [material_sort_key(str(v)) for v in df["cod_id"]]
    order = sorted(range(len(df)), key=keys.__getitem__)
    return df.iloc[order].reset_index(drop=True)


def build_manifest(
    entries: Iterable[CifEntry],
    subset_config: SubsetConfig,
    progress: Progress | None = None,
    *,
    verify_sha256: bool = True,
) -> ManifestResult:
    """Parse, analyse, filter and deduplicate fetched COD entries (then: sample_manifest).

    Args:
        entries: the fetched entries (any order; duplicates of a ``cod_id`` are dropped).
        subset_config: its filters and symmetry tolerances (its sample settings are for
            :func:`sample_manifest`).
        progress: called as ``progress(done, total)`` after each entry.
        verify_sha256: quarantine entries whose file bytes no longer match ``sha256``.

    Returns:
        Every kept entry (columns :data:`MANIFEST_COLUMNS`, sorted by ``cod_id``: COD ids
        numerically, then other material ids alphabetically)
        and the quarantine (columns :data:`QUARANTINE_COLUMNS`, same order).
    """
    unique = list({entry.cod_id: entry for entry in entries}.values())
    rows: list[dict] = []
    structures: dict[str, Structure] = {}
    quarantine: list[dict] = []
    for done, entry in enumerate(unique, start=1):
        row, structure, rejected = _process_entry(entry, subset_config, verify_sha256)
        if rejected is not None:
            quarantine.append(rejected)
        else:
            rows.append(row)
            structures[entry.cod_id] = structure
        if progress is not None:
            progress(done, len(unique))

    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)) if rows else _empty_manifest()
    if subset_config.filters.deduplicate:
        manifest, dropped = deduplicate(manifest)
        for rec in dropped.itertuples(index=False):
            detail = (
                f"same reduced formula {rec.reduced_formula} and space group "
                f"{rec.space_group_number} as COD {rec.kept_cod_id}"
            )
            quarantine.append(
                {
                    "cod_id": rec.cod_id,
                    "stage": "dedupe",
                    "reason": "duplicate",
                    "detail": detail,
                    "source": rec.source,
                }
            )

    dims = [structural_dimensionality(structures[cod_id]) for cod_id in manifest["cod_id"]]
    manifest = manifest.assign(
        dimensionality=pd.array([d for d, _ in dims], dtype="Int64"),
        dimensionality_reason=pd.Series([r for _, r in dims], index=manifest.index, dtype=object),
    )
    manifest = _sorted_by_id(manifest)
    table = pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS))
    return ManifestResult(manifest=manifest, quarantine=_sorted_by_id(table))


def allocate_strata(counts: dict[str, int], size: int, rng: np.random.Generator) -> dict[str, int]:
    """How many to draw from each class: as even as possible, capped by what each has.

    Classes with fewer entries than an even share give all they have; what they leave is
    spread evenly over the others; the last few (``size`` not divisible) go to classes
    chosen by ``rng``.

    Args:
        counts: entries per class.
        size: total to draw, at most ``sum(counts.values())``.
        rng: decides which classes get the indivisible remainder.

    Returns:
        Entries to draw per class (summing to ``size``).
    """
    if size > sum(counts.values()):
        raise ValueError(f"sample size {size} exceeds the {sum(counts.values())} entries")
    alloc: dict[str, int] = {}
    left = size
    pending = sorted(counts, key=lambda label: (counts[label], label))
    while pending:
        share = left // len(pending)
        small = [label for label in pending if counts[label] <= share]
        if not small:
            break
        for label in small:
            alloc[label] = counts[label]
            left -= counts[label]
        pending = [label for label in pending if label not in small]
    if pending:
        base, extra = divmod(left, len(pending))
        lucky = set(rng.permutation(sorted(pending))[:extra].tolist())
        for label in pending:
            alloc[label] = base + (label in lucky)
    return alloc


def sample_manifest(
    df: pd.DataFrame, size: int | None, stratify_by: str | None, seed: int
) -> pd.DataFrame:
    """A seeded sample of manifest rows, optionally even across the classes of a label.

    Args:
        df: the manifest.
        size: rows to keep; ``None`` or at least ``len(df)`` keeps every row.
        stratify_by: a label column (``crystal_system``, ``lattice_system``) to balance.
        seed: the sample is a function of the rows and this seed only.

    Returns:
        The sampled rows, sorted by numeric ``cod_id``.
    """
    if size is not None and size < 1:
        raise ValueError(f"sample size {size} must be at least 1")
    if size is None or size >= len(df):
        return _sorted_by_id(df)
    df = _sorted_by_id(df)
    rng = np.random.default_rng(seed)
    if stratify_by is None:
        picked = np.sort(rng.choice(len(df), size=size, replace=False))
        return df.iloc[picked].reset_index(drop=True)
    if stratify_by not in df.columns:
        raise ValueError(f"stratify_by {stratify_by!r} is not a manifest column")
    counts = df[stratify_by].value_counts().to_dict()
    alloc = allocate_strata({str(k): int(v) for k, v in counts.items()}, size, rng)
    order = [c for c in LATTICE_SYSTEMS if c in alloc] + sorted(
        c for c in alloc if c not in LATTICE_SYSTEMS
    )
    chosen: list[np.ndarray] = []
    for label in order:
        members = np.flatnonzero(df[stratify_by].astype(str).to_numpy() == label)
        chosen.append(rng.choice(members, size=alloc[label], replace=False))
    picked = np.sort(np.concatenate(chosen))
    return df.iloc[picked].reset_index(drop=True)


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_manifest(result: ManifestResult, folder: Path | str) -> Path:
    """Write ``manifest.parquet`` and ``quarantine.parquet`` atomically (temp + rename).

    Args:
        result: what :func:`build_manifest` returned.
        folder: the subset's folder (created if missing).

    Returns:
        The path of ``manifest.parquet``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(result.quarantine, folder / QUARANTINE_FILE)
    _write_atomic(result.manifest, folder / MANIFEST_FILE)
    return folder / MANIFEST_FILE


def manifest_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a manifest file's bytes (logged with every run that reads it)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path | str) -> pd.DataFrame:
    """Read a subset's ``manifest.parquet`` (columns :data:`MANIFEST_COLUMNS`).

    Raises:
        FileNotFoundError: there is no ``manifest.parquet`` in ``folder``.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_FILE} in {folder}; run the fetch stage first")
    manifest = pd.read_parquet(path)
    manifest["dimensionality"] = manifest["dimensionality"].astype("Int64")
    return manifest


def read_quarantine(folder: Path | str) -> pd.DataFrame:
    """Read a subset's ``quarantine.parquet`` (an empty table if the file is missing)."""
    path = Path(folder) / QUARANTINE_FILE
    return pd.read_parquet(path) if path.is_file() else _empty_quarantine()


def manifest_summary(result: ManifestResult) -> dict[str, Any]:
    """Counts for logs and reports: kept, quarantined per ``stage/reason``, per label."""
    q = result.quarantine
    return {
        "kept": len(result.manifest),
        "quarantined": len(q),
        "quarantine": {
            f"{stage}/{reason}": int(n)
            for (stage, reason), n in q.groupby(["stage", "reason"]).size().items()
        },
        "crystal_system": result.manifest["crystal_system"].value_counts().to_dict()
        if len(result.manifest)
        else {},
    }
