r"""What indexing says about a pattern's lattice, and how that joins a classifier's answer.

**The outcome** (:func:`indexing_outcome`) of a scan's cells (:func:`~xrdpipe.indexing.cells.
index_lines`) is one of :data:`OUTCOMES`: the lattice system of the family with the highest
figure of merit, when that reaches :data:`MIN_FIGURE_OF_MERIT`, else ``none``. A cubic
lattice is a special tetragonal, rhombohedral and hexagonal one, so those families index a
cubic pattern too, often with a figure close to the cubic one's, or higher where a few
lines let their second free value absorb the noise: the outcome is ``cubic`` when the best
cubic family reaches :data:`CUBIC_SHARE` of the best figure or
:data:`CUBIC_FIGURE_OF_MERIT` without predicting more than :data:`CUBIC_CALCULATED_RATIO`
times the best cell's lines, or when the best cell has a cubic metric
(:data:`PSEUDO_CUBIC`). The orthorhombic cell is tried only where none of those families
reaches the figure (:data:`~xrdpipe.indexing.cells.HIGHER_SYMMETRY_FIGURE`): an orthorhombic
cell indexes their patterns too. ``none`` is evidence as well: a triclinic or monoclinic
pattern has no cell of these families.

**The joint answer** (:func:`combine`): with ``P(o | c)``, how often patterns of class ``c``
give outcome ``o`` (an :class:`OutcomeTable` counted on synthetic crystals rendered like
measurements, ``benchmarks/indexing.py``), and a classifier's calibrated probabilities
``p(c | x)``, the posterior under the assumption that the two are independent given the
class is

    p(c | x, o) = p(c | x) P(o | c) / sum_c' p(c' | x) P(o | c').

Counts are smoothed by adding :data:`PSEUDO_COUNT` to each cell of a class's row, so that no
outcome rules a class out entirely.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from xrdpipe.indexing.cells import (
    HIGHER_SYMMETRY_FIGURE,
    LATTICE_OF_FAMILY,
    IndexedCell,
    index_lines,
)
from xrdpipe.indexing.lines import observed_lines

OUTCOMES = ("cubic", "tetragonal", "hexagonal", "rhombohedral", "orthorhombic", "none")
"""What indexing can say about a pattern."""
MIN_FIGURE_OF_MERIT = HIGHER_SYMMETRY_FIGURE
"""The best cell's de Wolff figure of merit needed for an outcome other than ``none``."""
CUBIC_SHARE = 0.4
"""The outcome is cubic when the best cubic cell's figure reaches this share of the best..."""
CUBIC_FIGURE_OF_MERIT = 50.0
"""... or this figure itself (one free value indexing every line that well is the answer),
provided that the cubic cell predicts at most ..."""
CUBIC_CALCULATED_RATIO = 2.0
"""... this many times the distinct lines the best cell predicts up to the same ``Q``: a large
cubic cell fits a handful of lines to a high figure while predicting ten times as many lines as
the cell that explains them (an hcp metal's five lines: hexagonal P with 6, cubic I of 15.6
angstrom with 62) ..."""
PSEUDO_CUBIC = {
    "tetragonal": (1.0, math.sqrt(2.0), math.sqrt(0.5)),
    "rhombohedral": (math.sqrt(6.0), math.sqrt(1.5), math.sqrt(6.0) / 4.0),
}
"""... or the best cell's ``c / a`` is one a cubic lattice has in that family's setting
(tetragonal I with ``sqrt 2`` is cubic F; on hexagonal axes, cubic F, P and I are the
rhombohedral cells with ``sqrt 6``, ``sqrt 3/2`` and ``sqrt 6 / 4``) ..."""
METRIC_TOLERANCE = 0.003
"""... within this relative difference."""
PSEUDO_COUNT = 0.5
"""Added to each (class, outcome) count of the table."""
DEFAULT_TABLE = "outcomes.json"
"""The packaged table (``xrdpipe/indexing/data``), written by ``benchmarks/indexing.py``."""


def indexing_outcome(cells: Mapping[str, IndexedCell | None]) -> tuple[str, IndexedCell | None]:
    """The outcome of a scan's best cells per family, and the cell it rests on (module doc)."""
    found = {f: c for f, c in cells.items() if c is not None}
    if not found:
        return "none", None
    best = max(found.values(), key=lambda c: c.figure_of_merit)
    if best.figure_of_merit < MIN_FIGURE_OF_MERIT:
        return "none", None
    cubic = [c for c in found.values() if LATTICE_OF_FAMILY[c.family] == "cubic"]
    top = max(cubic, key=lambda c: c.figure_of_merit) if cubic else None
    if (
        top is not None
        and top.n_calculated <= CUBIC_CALCULATED_RATIO * best.n_calculated
        and (
            top.figure_of_merit >= CUBIC_SHARE * best.figure_of_merit
            or top.figure_of_merit >= CUBIC_FIGURE_OF_MERIT
        )
    ):
        return "cubic", top
    ratio = best.c / best.a
    if any(
        abs(ratio / r - 1.0) < METRIC_TOLERANCE for r in PSEUDO_CUBIC.get(best.lattice_system, ())
    ):
        return "cubic", best
    return best.lattice_system, best


@dataclass(frozen=True)
class ScanIndexing:
    """What indexing found in one scan.

    Attributes:
        outcome: one of :data:`OUTCOMES`.
        cell: the cell the outcome rests on (``None`` for ``none``).
        n_lines: lines found in the scan.
    """

    outcome: str
    cell: IndexedCell | None
    n_lines: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: outcome, lines, the cell (``None`` for ``none``) and :meth:`describe`."""
        c = self.cell
        cell = None
        if c is not None:
            cell = {
                "family": c.family,
                "a": c.a,
                "b": c.b,
                "c": c.c,
                "zero_deg": c.zero_deg,
                "figure_of_merit": c.figure_of_merit,
                "n_indexed": c.n_indexed,
                "n_lines": c.n_lines,
            }
        return {
            "outcome": self.outcome,
            "n_lines": self.n_lines,
            "cell": cell,
            "text": self.describe(),
        }

    def describe(self) -> str:
        """One line for people: ``hexagonal (a 3.209, c 5.211 A, M 41, 12/12 lines)``."""
        if self.cell is None:
            return f"no cell of a lattice above monoclinic ({self.n_lines} lines)"
        c = self.cell
        if c.lattice_system == "cubic":
            edges = f"a {c.a:.4f}"
        elif c.lattice_system == "orthorhombic":
            edges = f"a {c.a:.4f}, b {c.b:.4f}, c {c.c:.4f}"
        else:
            edges = f"a {c.a:.4f}, c {c.c:.4f}"
        return (
            f"{self.outcome}: {c.family} cell {edges} angstrom, M{c.n_lines} "
            f"{c.figure_of_merit:.0f}, {c.n_indexed}/{c.n_lines} lines, zero {c.zero_deg:+.3f} deg"
        )


def index_scan(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    ka1: float,
    ka2: float | None = None,
    ka2_ratio: float = 0.5,
) -> ScanIndexing:
    """Lines, cells and outcome of one scan (:mod:`~xrdpipe.indexing.lines`, then cells)."""
    lines = observed_lines(two_theta, intensity, ka1, ka2, ka2_ratio)
    outcome, cell = indexing_outcome(index_lines(lines))
    return ScanIndexing(outcome, cell, len(lines))


@dataclass(frozen=True)
class OutcomeTable:
    """Counts of indexing outcomes per class, and the likelihoods ``P(o | c)`` they give.

    Attributes:
        target: what the classes are (``lattice_system``, ``crystal_system``).
        counts: ``{class: {outcome: count}}``.
        source: how the counts were made (the command, the crystals, the rendering).
    """

    target: str
    counts: dict[str, dict[str, int]]
    source: str = ""

    def likelihoods(self, classes: Sequence[str]) -> np.ndarray:
        """``P(o | c)`` as ``(len(classes), len(OUTCOMES))``; a class without counts is flat."""
        out = np.empty((len(classes), len(OUTCOMES)))
        for i, name in enumerate(classes):
            row = self.counts.get(name, {})
            n = np.array([row.get(o, 0) for o in OUTCOMES], dtype=np.float64) + PSEUDO_COUNT
            out[i] = n / n.sum()
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "counts": self.counts, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeTable:
        counts = {str(c): {str(o): int(v) for o, v in r.items()} for c, r in data["counts"].items()}
        for c, row in counts.items():
            unknown = set(row) - set(OUTCOMES)
            if unknown:
                raise ValueError(
                    f"outcome table row {c!r} has outcomes {sorted(unknown)}; "
                    f"allowed: {', '.join(OUTCOMES)}"
                )
        return cls(str(data["target"]), counts, str(data.get("source", "")))


def packaged_table(target: str) -> OutcomeTable | None:
    """The packaged table of ``target``, or ``None`` where there is none for it.

    ``space_group`` is the lattice-system table with one row per space group, its lattice
    system's (:func:`space_group_table`).
    """
    text = resources.files("xrdpipe.indexing").joinpath("data", DEFAULT_TABLE).read_text()
    tables = json.loads(text)["tables"]
    if target == "space_group" and "lattice_system" in tables:
        return space_group_table(OutcomeTable.from_dict(tables["lattice_system"]))
    return OutcomeTable.from_dict(tables[target]) if target in tables else None


def space_group_table(table: OutcomeTable) -> OutcomeTable:
    """A lattice-system table spread over the 230 space groups (classes ``"1"``...``"230"``).

    Indexing sees only the lattice, so ``P(o | group)`` is ``P(o | its lattice system)``;
    joined with a space-group classifier (:func:`combine`), each group's probability is
    weighted by its lattice's likelihood, and summing the joined groups per lattice system
    gives exactly the lattice-system join of the summed probabilities.
    """
    from xrdpipe.structures.hierarchy import system_of_space_group  # lazily: pymatgen

    if table.target != "lattice_system":
        raise ValueError(f"a space-group table needs a lattice_system table, not {table.target}")
    counts = {
        str(n): dict(table.counts.get(system_of_space_group(n, "lattice_system"), {}))
        for n in range(1, 231)
    }
    return OutcomeTable("space_group", counts, f"{table.source} (per lattice system)")


def combine(
    probabilities: np.ndarray, outcomes: Sequence[str], table: OutcomeTable, classes: Sequence[str]
) -> np.ndarray:
    """``p(c | x, o)`` of each pattern (module docstring): ``(B, K)`` rows summing to 1.

    Args:
        probabilities: calibrated classifier probabilities ``(B, K)`` over ``classes``.
        outcomes: each pattern's indexing outcome (one of :data:`OUTCOMES`).
        table: the outcome counts of the same target.
        classes: the classifier's class names, in its output order.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] != len(outcomes):
        raise ValueError(
            f"probabilities {p.shape} must be (len(outcomes)={len(outcomes)}, "
            f"len(classes)={len(classes)})"
        )
    bad = sorted(set(outcomes) - set(OUTCOMES))
    if bad:
        raise ValueError(f"unknown indexing outcomes {bad}; allowed: {', '.join(OUTCOMES)}")
    like = table.likelihoods(classes)[:, [OUTCOMES.index(o) for o in outcomes]].T
    joint = p * like
    return joint / np.maximum(joint.sum(axis=1, keepdims=True), 1e-300)
