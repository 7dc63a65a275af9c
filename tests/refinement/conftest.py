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


def jacobian_errors(problem, theta, free):
    """Per free parameter: (name, |analytic - central difference|, |central difference|)."""
    import numpy as np

    analytic = problem.jacobian(theta, free)
    out = []
    for column, k in enumerate(np.flatnonzero(free)):
        step = 1e-6 * max(abs(theta[k]), 1e-2)
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        numeric = (problem.evaluate(up).residual - problem.evaluate(down).residual) / (2 * step)
        error = float(np.linalg.norm(analytic[:, column] - numeric))
        out.append((problem.layout.names[k], error, float(np.linalg.norm(numeric))))
    return out
