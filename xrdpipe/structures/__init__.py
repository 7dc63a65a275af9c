"""COD CIFs to a filtered, labelled, sampled manifest: parse, symmetry, filters, manifest."""

from xrdpipe.structures.manifest import (
    MANIFEST_COLUMNS,
    QUARANTINE_COLUMNS,
    CifEntry,
    ManifestResult,
    build_manifest,
    manifest_sha256,
    read_manifest,
    read_quarantine,
    sample_manifest,
    structure_from_json,
    write_manifest,
)
from xrdpipe.structures.parse import cif_names, estimate_site_count, parse_structure
from xrdpipe.structures.symmetry import SymmetryInfo, analyse_symmetry, structural_dimensionality

__all__ = [
    "MANIFEST_COLUMNS",
    "QUARANTINE_COLUMNS",
    "CifEntry",
    "ManifestResult",
    "SymmetryInfo",
    "analyse_symmetry",
    "build_manifest",
    "cif_names",
    "estimate_site_count",
    "manifest_sha256",
    "parse_structure",
    "read_manifest",
    "read_quarantine",
    "sample_manifest",
    "structural_dimensionality",
    "structure_from_json",
    "write_manifest",
]
