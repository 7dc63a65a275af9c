"""A lab's set-up as one catalog entry: ``--phases DIR [--instrument SCAN]``.

:func:`phase_set_catalog` turns a folder of CIF files (and optionally one measured scan) into
a subset of the lab defaults (:func:`xrdpipe.config.phase_set.phase_set_subset`, the
instrument read from the scan by :func:`xrdpipe.readers.instrument.read_instrument`) and
writes ``<data_dir>/<name>/catalog.yaml``: the base catalog (the one ``load_catalog`` would
read, its relative paths made absolute) plus that one subset entry, with comments naming
what came from the scan and what is a default. Every stage then runs on it as on any
catalog; the entry is the one a lab would copy into its own ``catalog.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xrdpipe.config import Settings, SubsetConfig, catalog_path, load_catalog
from xrdpipe.config.catalog import default_catalog_path
from xrdpipe.config.phase_set import LAB_PROFILE, PHASE_SET_PRESET, phase_set_subset
from xrdpipe.errors import ConfigError

if TYPE_CHECKING:
    from xrdpipe.stages.pipeline import PipelineOptions

PHASE_SET_PREFIX = "phases-"
"""The subset name of a phase set is this prefix and a slug of the folder's name."""
CATALOG_FILE = "catalog.yaml"
"""The catalog written into the phase set's folder of the data directory."""


@dataclass(frozen=True)
class PhaseSet:
    """A phase set's subset and the catalog that holds it.

    Attributes:
        name: the subset's name, ``phases-<slug of the folder name>``.
        catalog: the written catalog file (pass it as ``catalog=`` to every stage).
        subset: the subset entry.
        preset: the phase-fraction preset to train with (:data:`PHASE_SET_PRESET`).
    """

    name: str
    catalog: Path
    subset: SubsetConfig
    preset: str


def phase_set_name(phases: Path) -> str:
    """``phases-<slug>`` of a folder (or a file's folder): letters, digits, ``_`` and ``-``.

    ``lab phases/`` -> ``phases-lab_phases``; ``La(OH)3 set`` -> ``phases-La_OH_3_set``.
    """
    folder = Path(phases).resolve()
    stem = folder.name if folder.is_dir() or not folder.suffix else folder.parent.name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:48]
    return PHASE_SET_PREFIX + (slug or "set")


def _absolute_paths(subsets: dict[str, Any], base: Path) -> dict[str, Any]:
    """Every subset's ``mirror_dir`` and ``phases`` relative to ``base``, made absolute."""
    out = {}
    for name, entry in subsets.items():
        entry = dict(entry) if isinstance(entry, dict) else entry
        if isinstance(entry, dict):
            for key in ("mirror_dir", "phases"):
                value = entry.get(key)
                if isinstance(value, str):
                    entry[key] = str((base / value).resolve())
                elif isinstance(value, list):
                    entry[key] = [str((base / v).resolve()) for v in value]
        out[name] = entry
    return out


def _entry(subset: SubsetConfig) -> dict[str, Any]:
    """The subset as a catalog entry: every simulation and profile value written out."""
    entry = subset.model_dump(mode="json", exclude_defaults=True)
    entry["simulation"] = subset.simulation.model_dump(mode="json")
    entry["profile"] = subset.profile.model_dump(mode="json")
    return entry


class _PlainDumper(yaml.SafeDumper):
    """Writes shared values out in full (no ``&id001`` anchors a person would not write)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    """Ranges and other lists of numbers on one line: ``[0.8, 1.0]``."""
    flow = all(isinstance(v, (int, float)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_PlainDumper.add_representer(list, _list)


def _header(phases: Path, instrument: Path | None, base: Path, notes: dict[str, tuple]) -> str:
    lines = [
        "Written by xrdpipe (xrdpipe.stages.phase_set.phase_set_catalog): the catalog",
        f"  {base}",
        "plus one subset for the phase set",
        f"  {phases}",
        "with the lab defaults of xrdpipe.config.phase_set (docs/patterns.md, 'A lab's",
        "set-up'), the instrument below. Copy the entry into",
        "your own catalog.yaml to keep it; this file is written again on every --phases run.",
    ]
    if instrument is None:
        lines.append("Instrument: the defaults (Cu K-alpha doublet, 10-100 deg, 0.02 deg steps).")
    else:
        lines.append(f"Instrument read from {instrument}:")
        lines += [f"  {line}" for line in notes["read"]]
        lines.append("Kept from the defaults (the scan does not say):")
        lines += [f"  {line}" for line in notes["kept"]]
    return "".join(f"# {line}\n" for line in lines)


def phase_set_catalog(
    phases: Path,
    settings: Settings,
    instrument: Path | None = None,
    catalog: Path | None = None,
) -> PhaseSet:
    """Write the catalog of a phase set (and its instrument) and say where.

    Args:
        phases: a folder of CIF files, any names, each file one phase named by its stem.
        settings: site settings (the data directory the catalog is written under).
        instrument: a measured scan (any format :func:`~xrdpipe.readers.read_pattern` reads)
            whose wavelengths, grid, divergence slit and radius the profile takes.
        catalog: the base catalog (else the one :func:`~xrdpipe.config.load_catalog` reads).

    Returns:
        The subset's name, the written catalog, the subset and the preset to train with.

    Raises:
        ConfigError: ``phases`` is not a folder, or the base catalog is invalid.
        MeasuredPatternError: the scan cannot be read.
    """
    phases = Path(phases)
    if not phases.is_dir():
        raise ConfigError(f"--phases {str(phases)!r} is not a folder; give a folder of CIF files")
    phases = phases.resolve()
    notes: dict[str, tuple] = {}
    profile = LAB_PROFILE
    if instrument is not None:
        from xrdpipe.readers import read_pattern
        from xrdpipe.readers.instrument import read_instrument

        found = read_instrument(read_pattern(instrument), LAB_PROFILE)
        profile = found.profile
        notes = {"read": found.read, "kept": found.kept}
        instrument = Path(instrument).resolve()
    subset = phase_set_subset(phases, profile)
    base_path = catalog_path(catalog, settings).resolve()
    load_catalog(base_path, settings)  # validates the base (errors name its file)
    data = yaml.safe_load(base_path.read_text())
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    name = phase_set_name(phases)
    data["subsets"] = _absolute_paths(dict(data.get("subsets") or {}), base_path.parent)
    data["subsets"][name] = _entry(subset)
    presets = dict(data.get("presets") or {})
    table = dict(presets.get("phase_fractions") or {})
    if PHASE_SET_PRESET not in table:  # a lab's own catalog from before the preset
        packaged = yaml.safe_load(default_catalog_path().read_text())
        table[PHASE_SET_PRESET] = packaged["presets"]["phase_fractions"][PHASE_SET_PRESET]
        presets["phase_fractions"] = table
        data["presets"] = presets
    out = settings.subset_dir(name) / CATALOG_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=100)
    out.write_text(_header(phases, instrument, base_path, notes) + text)
    written = load_catalog(out, settings).subset(name)  # the file reads back as written
    return PhaseSet(name=name, catalog=out.resolve(), subset=written, preset=PHASE_SET_PRESET)


def phase_count(phase_set: PhaseSet, settings: Settings) -> int:
    """N of a phase set: the phases in its manifest once fetched, else its CIF files."""
    manifest = settings.subset_dir(phase_set.name) / "manifest.parquet"
    if manifest.is_file():
        import pandas as pd

        return len(pd.read_parquet(manifest, columns=["cod_id"]))
    from xrdpipe.structures.phase_files import discover_phase_files

    return len(discover_phase_files(phase_set.subset.phases))  # type: ignore[arg-type]


def phase_set_pipeline(
    options: PipelineOptions,
    settings: Settings,
    phases: Path,
    instrument: Path | None = None,
    *,
    preset: str | None = None,
    n_materials: int | None = None,
) -> PipelineOptions:
    """The pipeline's options on a phase set: its subset, catalog, preset, N and K.

    What ``xrdpipe run --phases`` and the ``pipeline`` flow's ``phases`` parameter do: write
    the phase set's catalog (on ``options.catalog``), train the phase-fraction model alone
    (a lattice-system classifier of a handful of phases says nothing) with ``preset`` (else
    :data:`PHASE_SET_PRESET`) on all phases (``n_materials`` if given) and K = min(K, N), and
    evaluate that one cell of the N/K grid.
    """
    found = phase_set_catalog(
        phases, settings, instrument, None if options.catalog is None else Path(options.catalog)
    )
    n = n_materials if n_materials is not None else phase_count(found, settings)
    k = min(options.max_phases, n)
    return replace(
        options,
        subset=found.name,
        catalog=str(found.catalog),
        preset=preset or found.preset,
        tasks=tuple(t for t in options.tasks if t == "phase-fractions"),
        n_materials=n,
        max_phases=k,
        grid_n_values=(n,),
        grid_k_values=(k,),
    )
