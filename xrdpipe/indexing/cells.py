r"""Trial indexing of a powder line list in the lattices of one to three cell parameters.

A crystallographer tells the lattice of a pattern by indexing it: finding a cell whose
reflections account for every observed line and predict few that are not observed. For the
lattices whose reciprocal metric has one to three free values (all angles fixed) the search
is exhaustive and fast. With ``Q = 1 / d^2`` (angstrom^-2), ``Q = sum_j P_j X_j(hkl)``:

=================  ==========================================  ===============================
family             ``X(hkl)`` and ``P``                        reflections kept
=================  ==========================================  ===============================
cubic P, I, F      ``h^2 + k^2 + l^2``; ``1/a^2``              all; ``h+k+l`` even; unmixed
tetragonal P, I    ``h^2 + k^2``, ``l^2``; ``1/a^2, 1/c^2``    all; ``h+k+l`` even
hexagonal P        ``h^2 + hk + k^2``, ``l^2``;                all
                   ``4/(3a^2), 1/c^2``
rhombohedral R     as hexagonal P (hexagonal axes)             ``-h + k + l = 3n``
orthorhombic P     ``h^2``, ``k^2``, ``l^2``;                  all (a centred lattice indexes
                   ``1/a^2, 1/b^2, 1/c^2``                     with a lower figure)
=================  ==========================================  ===============================

:func:`index_lines` proposes cells from as many of the first observed lines as the family
has parameters, each given low indices (a linear solve), keeps the smallest cells that index
nearly all of the first lines at a loose tolerance, refines each kept cell together with a
zero shift by linear least squares on the lines it indexes (``Q_obs = X P + g z`` with
``g = dQ / d(2theta)``: a zero shift is linear in ``Q`` to first order), and scores it by de
Wolff's figure of merit (J. Appl. Cryst. 1968, 1, 108):

    M_N = Q_N / (2 <|Delta Q|> N_calc)

over the first ``N`` (at most 20) observed lines, with ``N_calc`` the number of distinct
``Q`` values the cell allows up to ``Q_N``. A right cell of a lattice of the family gives
``M_20`` of tens; a cell forced onto lines of a lower-symmetry lattice, a few. A cell that
leaves more than ``N // 10`` of the first lines unindexed is rejected.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from xrdpipe.indexing.lines import ObservedLines
from xrdpipe.patterns.physics import bragg_two_theta_deg

FAMILIES = (
    "cubic P",
    "cubic I",
    "cubic F",
    "tetragonal P",
    "tetragonal I",
    "hexagonal P",
    "rhombohedral R",
    "orthorhombic P",
)
"""The lattices :func:`index_lines` tries (module docstring)."""
LATTICE_OF_FAMILY = {f: f.split()[0] for f in FAMILIES}
"""The lattice system of each family."""
MAX_LINES = 20
"""Lines of the figure of merit (de Wolff's M20)."""
MIN_LINES = {"cubic": 3, "tetragonal": 5, "hexagonal": 5, "rhombohedral": 5, "orthorhombic": 8}
"""Fewer observed lines than this: no cell of the lattice is tried (at least two lines more
than unknowns, the zero shift included; three more for the orthorhombic cell, whose three
free values fit a short list of any lattice)."""
TOLERANCE_DEG = 0.03
"""A line is indexed when it lies within this of a calculated line, after the zero shift."""
SEARCH_TOLERANCE_DEG = 0.08
"""The looser tolerance of the first pass (before the zero shift is refined), degrees..."""
SEARCH_TOLERANCE_Q = 0.004
"""... plus this share of ``Q`` (a cell proposed from shifted lines is off by a scale)."""
MAX_ZERO_DEG = 0.25
"""A refined zero shift beyond this rejects the cell."""
MAX_EDGE = 40.0
"""Largest cell edge tried, angstrom (25 for the orthorhombic cell)."""
MAX_INDEX = 16
"""Largest ``|h|``, ``|k|``, ``l`` of the reflection tables."""
SEED_LINES = 5
"""Cells are proposed from the first this many lines."""
HIGHER_SYMMETRY_FIGURE = 8.0
"""The orthorhombic cell is tried only when no other family reaches this figure of merit
(an orthorhombic cell indexes every tetragonal, hexagonal and cubic pattern too)."""
KEPT = 24
"""Cells per family refined after the first pass..."""
FIRST_PASS_LINES = 12
"""... which counts the lines indexed among the first this many."""
_HEXAGONAL_A = 4.0 / 3.0


@dataclass(frozen=True)
class IndexedCell:
    """The best cell of one family.

    Attributes:
        family: one of :data:`FAMILIES`.
        a: cell edge ``a``, angstrom.
        c: cell edge ``c``, angstrom (``a`` for cubic).
        zero_deg: the refined zero shift, degrees two-theta (observed minus calculated).
        figure_of_merit: de Wolff's ``M_N`` (module docstring).
        n_lines: ``N``, the observed lines scored.
        n_indexed: how many of them the cell indexes.
        n_calculated: distinct calculated lines up to ``Q_N``.
        b: cell edge ``b``, angstrom (``a`` but for orthorhombic).
    """

    family: str
    a: float
    c: float
    zero_deg: float
    figure_of_merit: float
    n_lines: int
    n_indexed: int
    n_calculated: int
    b: float = 0.0

    @property
    def lattice_system(self) -> str:
        return LATTICE_OF_FAMILY[self.family]

    def parameters(self) -> np.ndarray:
        """The reciprocal-metric values ``P`` of the cell (module docstring)."""
        if self.lattice_system == "cubic":
            return np.array([1.0 / self.a**2])
        if self.lattice_system == "orthorhombic":
            return 1.0 / np.array([self.a, self.b, self.c]) ** 2
        first = _HEXAGONAL_A if self.lattice_system in ("hexagonal", "rhombohedral") else 1.0
        return np.array([first / self.a**2, 1.0 / self.c**2])

    def two_theta(self, wavelength: float, two_theta_max: float) -> np.ndarray:
        """The cell's distinct calculated lines up to ``two_theta_max``, degrees (no zero)."""
        q = np.unique(np.round(reflection_table(self.family) @ self.parameters(), 10))
        q = q[wavelength * np.sqrt(q) / 2.0 <= np.sin(np.deg2rad(two_theta_max) / 2.0)]
        return bragg_two_theta_deg(1.0 / np.sqrt(q), wavelength)


@cache
def reflection_table(family: str) -> np.ndarray:
    """Distinct rows ``X(hkl)`` of the family's reflections ``(R, k)``, by increasing sum."""
    if family not in FAMILIES:
        raise ValueError(f"unknown lattice family {family!r}; allowed: {', '.join(FAMILIES)}")
    r = np.arange(-MAX_INDEX, MAX_INDEX + 1)
    h, k, ell = (g.ravel() for g in np.meshgrid(r, r, np.arange(MAX_INDEX + 1), indexing="ij"))
    lattice, centring = family.split()
    keep = (h >= 0) & (k >= 0)
    if lattice == "cubic":
        if centring == "I":
            keep &= (h + k + ell) % 2 == 0
        elif centring == "F":
            keep &= (h % 2 == k % 2) & (k % 2 == ell % 2)
        rows = [h * h + k * k + ell * ell]
    elif lattice == "tetragonal":
        if centring == "I":
            keep &= (h + k + ell) % 2 == 0
        rows = [h * h + k * k, ell * ell]
    elif lattice == "orthorhombic":
        rows = [h * h, k * k, ell * ell]
    else:
        keep = np.ones_like(h, dtype=bool)
        if lattice == "rhombohedral":
            keep &= (-h + k + ell) % 3 == 0
        rows = [h * h + h * k + k * k, ell * ell]
    table = np.stack(rows, axis=1)
    keep &= table.sum(axis=1) > 0
    table = np.unique(table[keep], axis=0)
    order = np.lexsort((*table.T[::-1], table.sum(axis=1)))
    return table[order].astype(np.float64)


@cache
def _groups(family: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The table grouped by all but its first column: ``((rest, sorted first values), ...)``."""
    table = reflection_table(family)
    rest = np.unique(table[:, 1:], axis=0)
    return tuple((row, np.unique(table[(table[:, 1:] == row).all(axis=1), 0])) for row in rest)


def _q_per_degree(two_theta: np.ndarray, wavelength: float) -> np.ndarray:
    """``dQ / d(2theta)`` per degree: ``(2 / lambda^2) sin(2theta) pi / 180``."""
    return 2.0 / wavelength**2 * np.sin(np.deg2rad(two_theta)) * math.pi / 180.0


def _edges(family: str, p: np.ndarray) -> np.ndarray:
    """Cell edges ``(K, k)`` of reciprocal-metric rows ``p`` ``(K, k)``."""
    scale = np.ones(p.shape[1])
    if LATTICE_OF_FAMILY[family] in ("hexagonal", "rhombohedral"):
        scale[0] = _HEXAGONAL_A
    return np.sqrt(scale / p)


@cache
def _seed_matrices(family: str) -> np.ndarray:
    """Every ordered choice of ``k`` low rows ``X`` for ``k`` seed lines, ``(n, k, k)``."""
    table = reflection_table(family)
    k = table.shape[1]
    if k == 2:
        basis = table[(table[:, 0] <= 12) & (table[:, 1] <= 64)]
    else:
        basis = table[table.sum(axis=1) <= 5]
    matrices = basis[np.array(list(itertools.permutations(range(len(basis)), k)))]
    return matrices[np.abs(np.linalg.det(matrices)) > 1e-9]


def _proposals(family: str, q: np.ndarray) -> np.ndarray:
    """Candidate rows ``P`` from the first lines given low indices (module docstring)."""
    table = reflection_table(family)
    k = table.shape[1]
    seeds = q[:SEED_LINES]
    if k == 1:
        values = table[table[:, 0] <= 60, 0]
        return (seeds[:, None] / values[None, :]).reshape(-1, 1)
    matrices = _seed_matrices(family)
    out = []
    for lines in itertools.combinations(range(seeds.size), k):
        rhs = np.broadcast_to(seeds[list(lines)], (len(matrices), k))
        out.append(np.linalg.solve(matrices, rhs[..., None])[..., 0])
    cand = np.concatenate(out) if out else np.zeros((0, k))
    cand = cand[(cand > 0).all(axis=1)]
    if k == 3:  # the axes' order is free: a >= b >= c
        cand = cand[(cand[:, 0] <= cand[:, 1]) & (cand[:, 1] <= cand[:, 2])]
    largest = 25.0 if k == 3 else MAX_EDGE
    cand = cand[(_edges(family, cand) <= largest).all(axis=1)]
    return np.unique(np.round(cand, 9), axis=0)


def _nearest(
    family: str, p: np.ndarray, q: np.ndarray, with_rows: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """The calculated ``Q`` nearest each line ``q`` ``(L,)`` for cells ``p`` ``(K, k)``.

    Returns ``(Q (K, L), X (K, L, k) or None)``: the nearest calculated values and, with
    ``with_rows``, their rows. Groups whose every value lies 2 % above the last line are
    skipped (no line can be indexed by them; the group of ``h00`` always takes part).
    """
    shape = (p.shape[0], q.size)
    best = np.full(shape, np.inf)
    best_x = np.zeros((*shape, p.shape[1])) if with_rows else None
    limit = 1.02 * float(q.max())
    for rest, firsts in _groups(family):
        base = p[:, 1:] @ rest
        if rest.any() and base.min() > limit:
            continue
        needed = (q[None, :] - base[:, None]) / p[:, :1]
        i = np.clip(np.searchsorted(firsts, needed), 1, max(firsts.size - 1, 1))
        for first in (firsts[i - 1], firsts[np.minimum(i, firsts.size - 1)]):
            calc = p[:, :1] * first + base[:, None]
            closer = np.abs(calc - q[None, :]) < np.abs(best - q[None, :])
            best = np.where(closer, calc, best)
            if best_x is not None:
                best_x[closer, 0] = first[closer]
                best_x[closer, 1:] = rest
    return best, best_x


def _allowance(n_lines: int) -> int:
    """Lines of ``n_lines`` a cell may leave unindexed (impurity, noise, a merged doublet)."""
    return n_lines // 10


def _first_pass(family: str, cand: np.ndarray, q: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """The :data:`KEPT` smallest cells that index nearly all of the first lines, loosely.

    The smallest cell first: a large enough cell indexes any line list (de Wolff's reason
    for counting calculated lines in the figure of merit).
    """
    q, tol = q[:FIRST_PASS_LINES], tol[:FIRST_PASS_LINES]
    counts = np.zeros(len(cand), dtype=np.int64)
    for start in range(0, len(cand), 2048):
        calc, _ = _nearest(family, cand[start : start + 2048], q)
        counts[start : start + 2048] = (np.abs(calc - q[None, :]) <= tol[None, :]).sum(axis=1)
    edges = _edges(family, cand)
    volume = np.prod(edges, axis=1) * edges[:, 0] ** (3 - cand.shape[1])
    enough = counts >= q.size - 2 * _allowance(q.size)
    order = np.lexsort((volume, ~enough))
    return cand[order[:KEPT]]


def _score(
    family: str,
    p: np.ndarray,
    q: np.ndarray,
    g: np.ndarray,
    tol: np.ndarray,
    loose: np.ndarray,
) -> IndexedCell | None:
    """Refine one cell with a zero shift on the lines it indexes; its figure of merit.

    The first assignment of indices uses the ``loose`` tolerance, the next ones ``tol``.
    """
    zero = 0.0
    for step in range(4):
        calc, x = _nearest(family, p[None, :], q - g * zero, with_rows=True)
        hit = np.abs(q - g * zero - calc[0]) <= (loose if step == 0 else tol)
        if hit.sum() < max(p.size + 2, q.size - _allowance(q.size)):
            return None
        design = np.concatenate([x[0], g[:, None]], axis=1)[hit]
        sol, *_ = np.linalg.lstsq(design, q[hit], rcond=None)
        p, zero = sol[:-1], float(sol[-1])
        if (p <= 0).any() or abs(zero) > MAX_ZERO_DEG:
            return None
    calc, _ = _nearest(family, p[None, :], q - g * zero)
    err = np.abs(q - g * zero - calc[0])
    hit = err <= tol
    if hit.sum() < q.size - _allowance(q.size):
        return None
    q_max = q[-1] - g[-1] * zero
    values = reflection_table(family) @ p
    allowed = np.unique(np.round(values[values <= q_max * (1 + 1e-9)], 10))
    fom = q_max / (2.0 * max(float(err[hit].mean()), 1e-7) * max(allowed.size, 1))
    edges = _edges(family, p[None, :])[0]
    a, b, c = (edges[0], edges[0], edges[-1]) if edges.size < 3 else edges
    return IndexedCell(
        family=family,
        a=float(a),
        c=float(c),
        zero_deg=zero,
        figure_of_merit=float(fom),
        n_lines=int(q.size),
        n_indexed=int(hit.sum()),
        n_calculated=int(allowed.size),
        b=float(b),
    )


def index_lines(
    lines: ObservedLines, families: tuple[str, ...] = FAMILIES
) -> dict[str, IndexedCell | None]:
    """The best cell of each family for the first :data:`MAX_LINES` lines (module docstring).

    Returns ``{family: cell or None}``; ``None`` where the scan has fewer lines than
    :data:`MIN_LINES` of the family's lattice, where no cell of the family indexes them, and
    for the orthorhombic family where another reaches :data:`HIGHER_SYMMETRY_FIGURE`.
    """
    two_theta = lines.two_theta[:MAX_LINES]
    q = lines.q[:MAX_LINES]
    g = _q_per_degree(two_theta, lines.wavelength)
    loose = g * SEARCH_TOLERANCE_DEG + q * SEARCH_TOLERANCE_Q
    out: dict[str, IndexedCell | None] = {}
    for family in sorted(families, key=lambda f: LATTICE_OF_FAMILY[f] == "orthorhombic"):
        higher = max((c.figure_of_merit for c in out.values() if c is not None), default=0.0)
        if q.size < MIN_LINES[LATTICE_OF_FAMILY[family]] or (
            LATTICE_OF_FAMILY[family] == "orthorhombic" and higher >= HIGHER_SYMMETRY_FIGURE
        ):
            out[family] = None
            continue
        cand = _proposals(family, q)
        best: IndexedCell | None = None
        if len(cand):
            for p in _first_pass(family, cand, q, loose):
                cell = _score(family, p, q, g, g * TOLERANCE_DEG, loose)
                if cell is not None and (
                    best is None or cell.figure_of_merit > best.figure_of_merit
                ):
                    best = cell
        out[family] = best
    return out
