from __future__ import annotations

import pytest

from tests.refinement.engine_scan import cod_structure, strained
from xrdpipe.refinement import phase_from_structure

MIXTURE_IDS = ("9008565", "1537412", "1000054")
"""Si (cubic, the internal standard), VO2 rutile type (tetragonal), brucite (trigonal)."""

PLANTED_EDGES = ((0.0, 0.0, 0.0), (-0.003, -0.003, 0.002), (0.001, 0.001, -0.004))
"""Relative changes of a, b, c planted in each phase (Si's cell is the certified one)."""


@pytest.fixture(scope="session")
def mixture_structures():
    return [cod_structure(i) for i in MIXTURE_IDS]


@pytest.fixture(scope="session")
def planted_structures(mixture_structures):
    return [strained(s, e) for s, e in zip(mixture_structures, PLANTED_EDGES, strict=True)]


@pytest.fixture(scope="session")
def mixture_phases(mixture_structures):
    return [
        phase_from_structure(s, i, (10.0, 80.0))
        for s, i in zip(mixture_structures, MIXTURE_IDS, strict=True)
    ]
