"""Powder indexing: line positions, trial cells and what they say about the lattice.

Pure numpy/scipy science (no tracking, no orchestration). :mod:`.lines` finds the K-alpha1
line positions of a scan, :mod:`.cells` tries the cubic, tetragonal, hexagonal and
rhombohedral lattices by de Wolff's figure of merit, :mod:`.evidence` turns the cells into
an outcome and joins it with a classifier's probabilities. ``docs/indexing.md`` explains.
"""

from xrdpipe.indexing.cells import FAMILIES, IndexedCell, index_lines
from xrdpipe.indexing.evidence import (
    OUTCOMES,
    OutcomeTable,
    ScanIndexing,
    combine,
    index_scan,
    indexing_outcome,
    packaged_table,
)
from xrdpipe.indexing.lines import ObservedLines, observed_lines, scan_wavelengths

__all__ = [
    "FAMILIES",
    "OUTCOMES",
    "IndexedCell",
    "ObservedLines",
    "OutcomeTable",
    "ScanIndexing",
    "combine",
    "index_lines",
    "index_scan",
    "indexing_outcome",
    "observed_lines",
    "packaged_table",
    "scan_wavelengths",
]
