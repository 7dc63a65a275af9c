"""``xrdpipe quantify SCANS... --phases DIR``: measured scans to a weight-% table with error bars.

:func:`quantify` is what the CLI and the Prefect flow ``quantify`` call:

1. **Phase set**: :func:`xrdpipe.stages.phase_set.phase_set_catalog` turns the folder of CIFs
   (and the instrument read from ``--instrument SCAN``) into a subset of a catalog under
   ``<data_dir>/<phase set>/``.
2. **Store**: fetched and simulated with the pipeline's own stages and refresh rules
   (:func:`xrdpipe.stages.pipeline.local_steps`, :mod:`xrdpipe.stages.refresh`): the fetch
   (CIFs copied, parsed, checked) always runs, the simulation only when the store is missing,
   stale or incomplete.
3. **Model**: :func:`~xrdpipe.stages.quantify_model.ensure_model` reuses the registered
   ensemble whose fingerprint matches, else trains one (members in parallel on Dask).
4. **Scans**: read, quantified (:func:`~xrdpipe.stages.quantify_scans.quantify_patterns`:
   CNN mean and spread, optional refinement, detection limits, flags), written
   (:mod:`xrdpipe.stages.quantify_report`) into ``out_dir`` (default
   ``<data_dir>/<phase set>/quantify/<UTC timestamp>``).

A scan that cannot be read or put on the model's grid is listed under ``failed`` and the
batch goes on.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from xrdpipe.config import Settings, SubsetConfig, load_catalog
from xrdpipe.errors import XrdpipeError
from xrdpipe.readers import read_pattern
from xrdpipe.stages.quantify_model import (
    DEFAULT_MAX_PHASES,
    DEFAULT_MEMBERS,
    QuantifyModel,
    ensure_model,
)
from xrdpipe.stages.quantify_report import write_outputs
from xrdpipe.stages.quantify_scans import InternalStandard, ScanQuantity, quantify_patterns

Log = Callable[[str], None]
__all__ = ["QuantifyResult", "quantify", "quantify_patterns", "quantify_phase_set"]
DEFAULT_PRESET = "phase-set"
"""The phase-fraction preset of a phase set (weight fractions, distinct phases)."""


class PhaseSetLike(Protocol):
    """What :func:`quantify_phase_set` needs of a phase set (``stages.phase_set.PhaseSet``)."""

    name: str
    catalog: Path
    subset: SubsetConfig


@dataclass
class QuantifyResult:
    """What :func:`quantify` returns.

    Attributes:
        rows: one dict per (scan, phase) with the keys of
            :data:`~xrdpipe.stages.quantify_scans.COLUMNS`.
        out_dir: where the CSV, JSON, plots and HTML went.
        model: ``(registered name, version)`` of the ensemble.
        seconds_per_scan: median wall time per scan (CNN, refinement, flags; not the plots).
        trained: whether this call trained the model (else it was reused).
        scans: each scan's :class:`~xrdpipe.stages.quantify_scans.ScanQuantity`.
        failed: scans that could not be quantified, with the reason.
        files: ``{"csv", "json", "html"}`` paths.
        ensemble: the loaded model (pass it to
            :func:`~xrdpipe.stages.quantify_scans.quantify_patterns` to time scans alone).
    """

    rows: list[dict[str, Any]]
    out_dir: Path
    model: tuple[str, str]
    seconds_per_scan: float
    trained: bool
    scans: list[ScanQuantity] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    ensemble: QuantifyModel | None = field(default=None, repr=False)


FETCH_RECORD = "quantify_fetch"
"""The entry of :class:`~xrdpipe.stages.refresh.PipelineRecord` for the phase set's fetch."""


def phase_files_identity(config: SubsetConfig) -> dict[str, Any]:
    """What a phase set's manifest depends on: the fetch settings and each CIF's bytes."""
    import hashlib

    from xrdpipe.stages import refresh

    folders = config.phases if isinstance(config.phases, list) else [config.phases]
    files = {}
    for entry in folders:
        paths = sorted(Path(entry).glob("*.cif")) if Path(entry).is_dir() else [Path(entry)]
        for path in paths:
            files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"fetch": refresh.fetch_identity(config), "files": files}


def prepare_store(settings: Settings, phase_set: PhaseSetLike, log: Log = print) -> None:
    """Fetch the phase set and simulate its store unless they are current.

    The fetch is current while the manifest is the one recorded after the last fetch from
    the same CIF files (names and bytes) and fetch settings (the manifest records its
    fetch time, so fetching again would make the store stale); the simulation follows the
    pipeline's rules (:func:`~xrdpipe.stages.refresh.store_is_stale`,
    :func:`~xrdpipe.stages.refresh.simulation_is_current`).
    """
    from xrdpipe.stages import refresh
    from xrdpipe.stages.pipeline import local_steps
    from xrdpipe.structures.manifest import manifest_sha256

    name, catalog = phase_set.name, str(phase_set.catalog)
    config = load_catalog(phase_set.catalog, settings).subset(name)
    steps = local_steps(settings, log)
    record = refresh.PipelineRecord(settings.subset_dir(name) / refresh.RECORD_FILE)
    manifest = settings.subset_dir(name) / "manifest.parquet"
    key = refresh.identity_key(phase_files_identity(config))
    previous = record.get(FETCH_RECORD) or {}
    if (
        manifest.is_file()
        and previous.get("identity_key") == key
        and previous.get("manifest_sha256") == manifest_sha256(manifest)
    ):
        log("fetch: skipped, the same CIF files and settings made this manifest")
    else:
        steps.fetch(subset=name, catalog=catalog)
        record.set(
            FETCH_RECORD, {"identity_key": key, "manifest_sha256": manifest_sha256(manifest)}
        )
    overwrite = refresh.store_is_stale(settings, name, config)
    if overwrite:
        log(f"the phase set or the simulation settings changed: simulating {name!r} again")
    why = None if overwrite else refresh.simulation_is_current(settings, name, config)
    if why:
        log(f"simulate: skipped, {why}")
        return
    steps.simulate(subset=name, overwrite=overwrite, catalog=catalog)


def phase_structures(settings: Settings, model: QuantifyModel) -> dict[str, Any]:
    """Each phase's structure by its output name, from the phase set's manifest."""
    from pymatgen.core import Structure

    from xrdpipe.stages.simulate import load_manifest

    manifest, _ = load_manifest(settings.subset_dir(model.phase_set))
    by_id = {
        str(row.cod_id): Structure.from_dict(json.loads(row.structure_json))
        for row in manifest.itertuples()
    }
    return {name: by_id[m] for name, m in zip(model.names, model.materials, strict=True)}


def default_out_dir(settings: Settings, phase_set: str) -> Path:
    """``<data_dir>/<phase set>/quantify/<UTC timestamp>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return settings.subset_dir(phase_set) / "quantify" / stamp


def check_standard(internal_standard: str | None, standard_wt: float | None) -> None:
    """Both or neither; a weight percent strictly between 0 and 100.

    Raises:
        XrdpipeError: only one is given, or the percent is out of range.
    """
    if (internal_standard is None) != (standard_wt is None):
        raise XrdpipeError(
            f"--internal-standard ({internal_standard!r}) and --standard-wt ({standard_wt!r}) "
            "go together: give both or neither"
        )
    if standard_wt is not None and not 0 < standard_wt < 100:
        raise XrdpipeError(f"--standard-wt {standard_wt!r} must be between 0 and 100 (wt%)")


def quantify_phase_set(
    scans: Sequence[Path],
    phase_set: PhaseSetLike,
    settings: Settings,
    *,
    preset: str = DEFAULT_PRESET,
    members: int | None = None,
    refine: bool = False,
    internal_standard: str | None = None,
    standard_wt: float | None = None,
    max_phases: int = DEFAULT_MAX_PHASES,
    allow_partial: bool = False,
    out_dir: Path | None = None,
    log: Log = print,
) -> QuantifyResult:
    """:func:`quantify` from a resolved phase set (steps 2-4 of the module docstring)."""
    from xrdpipe import tracking

    check_standard(internal_standard, standard_wt)
    standard = (
        None
        if internal_standard is None or standard_wt is None
        else InternalStandard(internal_standard, float(standard_wt))
    )
    catalog = load_catalog(phase_set.catalog, settings)
    preset_config = catalog.preset("phase_fractions", preset)  # fails before any work
    prepare_store(settings, phase_set, log)
    tracking.configure(settings.tracking_uri())
    model = ensure_model(
        settings,
        phase_set.name,
        catalog.subset(phase_set.name),
        preset,
        preset_config,
        members=members or DEFAULT_MEMBERS,
        max_phases=max_phases,
        log=log,
    )
    if standard is not None and standard.phase not in model.names:
        raise XrdpipeError(
            f"internal standard {standard.phase!r} is not a phase of the set: {model.names}"
        )
    structures = phase_structures(settings, model) if refine else None
    quantities: list[ScanQuantity] = []
    failed: dict[str, str] = {}
    for path in scans:
        try:
            pattern = read_pattern(path)
            quantities += quantify_patterns(
                [pattern],
                model,
                refine=refine,
                structures=structures,
                standard=standard,
                allow_partial=allow_partial,
            )
        except XrdpipeError as exc:
            failed[str(path)] = str(exc)
            log(f"{path}: FAILED: {exc}")
    folder = Path(out_dir) if out_dir is not None else default_out_dir(settings, phase_set.name)
    seconds = statistics.median(q.seconds for q in quantities) if quantities else 0.0
    summary = {
        "phase_set": phase_set.name,
        "model": model.name,
        "model_version": model.version,
        "fingerprint": model.fingerprint,
        "members": model.members,
        "trained": model.trained,
        "preset": preset,
        "refine": refine,
        "unit": quantities[0].unit if quantities else "",
        "median_seconds_per_scan": seconds,
        "detection_limits_wt_percent": {
            k: None if math.isnan(v) else 100 * v for k, v in model.detection_limits.items()
        },
    }
    files = write_outputs(folder, quantities, summary, failed)
    rows = [row for q in quantities for row in q.rows()]
    log(f"{len(quantities)} of {len(scans)} scan(s) quantified; see {files['html']}")
    return QuantifyResult(
        rows=rows,
        out_dir=folder,
        model=(model.name, model.version),
        seconds_per_scan=seconds,
        trained=model.trained,
        scans=quantities,
        failed=failed,
        files=files,
        ensemble=model,
    )


def quantify(
    scans: Sequence[Path],
    phases: Path,
    settings: Settings,
    *,
    instrument: Path | None = None,
    preset: str = DEFAULT_PRESET,
    members: int | None = None,
    refine: bool = False,
    internal_standard: str | None = None,
    standard_wt: float | None = None,
    out_dir: Path | None = None,
    catalog: Path | None = None,
    log: Log = print,
) -> QuantifyResult:
    """Weight % of each phase of a folder of CIFs in measured scans, with error bars.

    Args:
        scans: measured files (any format :func:`xrdpipe.readers.read_pattern` reads).
        phases: a folder of CIF files, one per candidate phase (any file names).
        settings: site settings (data directory, MLflow URI, Dask).
        instrument: a scan whose metadata sets the instrument (wavelengths, range, ...).
        preset: the phase-fraction preset.
        members: ensemble members (default 3, seeds ``0 .. M-1``).
        refine: polish the CNN's answer with the whole-pattern refinement.
        internal_standard: a phase name of the set weighed into every sample.
        standard_wt: its weight percent of the whole sample.
        out_dir: where the outputs go (default ``<data>/<phase set>/quantify/<timestamp>``).
        catalog: the base catalog (default the settings').
        log: progress lines.

    Returns:
        The :class:`QuantifyResult`.
    """
    from xrdpipe.stages.phase_set import phase_set_catalog

    check_standard(internal_standard, standard_wt)
    phase_set = phase_set_catalog(
        phases, settings, instrument=instrument, catalog=catalog or settings.catalog
    )
    log(f"phase set {phase_set.name}: {phase_set.catalog}")
    return quantify_phase_set(
        scans,
        phase_set,
        settings,
        preset=preset,
        members=members,
        refine=refine,
        internal_standard=internal_standard,
        standard_wt=standard_wt,
        out_dir=out_dir,
        log=log,
    )
