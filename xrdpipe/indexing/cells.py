r"""Trial indexing of a powder line list in the lattices of one or two cell parameters.

A crystallographer tells the lattice of a pattern by indexing it: finding a cell whose
reflections account for every observed line and predict few that are not observed. For the
lattices whose reciprocal metric has one or two free values this search is exhaustive and
fast. With ``Q = 1 / d^2`` (angstrom^-2):

====================  ======================================  ==========================
family                ``Q(hkl)``                              reflections kept
====================  ======================================  ==========================
cubic P, I, F         ``A (h^2 + k^2 + l^2)``                 all; ``h+k+l`` even; unmixed
tetragonal P, I       ``A (h^2 + k^2) + C l^2``               all; ``h+k+l`` even
hexagonal P           ``A (h^2 + hk + k^2) + C l^2``          all
rhombohedral R        ``A (h^2 + hk + k^2) + C l^2``          ``-h + k + l = 3n`` (hexagonal axes)
====================  ======================================  ==========================

(``A = 1/a^2``, ``C = 1/c^2`` for the square lattices, ``A = 4 / (3 a^2)`` for the hexagonal
ones.) :func:`index_lines` proposes cells from pairs of the first observed lines given
low indices (for the cubic family, ``A = Q_i / N``), keeps those that index most of the
first lines, refines each kept cell together with a zero shift by linear least squares on
the lines it indexes (``Q_obs = A m + C n + g z`` with ``g = dQ / d(2theta)``: a zero shift
is linear in ``Q`` to first order), and scores it by de Wolff's figure of merit (J. Appl.
Cryst. 1968, 1, 108):

    M_N = Q_N / (2 <|Delta Q|> N_calc)

over the first ``N`` (at most 20) observed lines, with ``N_calc`` the number of distinct
``Q`` values the cell allows up to ``Q_N``. A right cell of a lattice of the family gives
``M_20`` of tens; a cell forced onto lines of a lower-symmetry lattice, a few. A cell that
leaves more than ``N // 10`` of the first lines unindexed is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from xrdpipe.indexing.lines import ObservedLines

FAMILIES = (
    "cubic P",
    "cubic I",
    "cubic F",
    "tetragonal P",
    "tetragonal I",
    "hexagonal P",
    "rhombohedral R",
)
"""The lattices :func:`index_lines` tries (module docstring)."""
LATTICE_OF_FAMILY = {f: f.split()[0] for f in FAMILIES}
"""The lattice system of each family."""
MAX_LINES = 20
"""Lines of the figure of merit (de Wolff's M20)."""
MIN_LINES = {"cubic": 3, "tetragonal": 5, "hexagonal": 5, "rhombohedral": 5}
"""Fewer observed lines than this: no cell of the lattice is tried (the cubic cell has one
free value, the others two, besides the zero shift: at least two lines more than unknowns)."""
TOLERANCE_DEG = 0.03
"""A line is indexed when it lies within this of a calculated line, after the zero shift."""
SEARCH_TOLERANCE_DEG = 0.08
"""The looser tolerance of the first pass (before the zero shift is refined), degrees..."""
SEARCH_TOLERANCE_Q = 0.004
"""... plus this share of ``Q`` (a cell proposed from two shifted lines is off by a scale)."""
MAX_ZERO_DEG = 0.25
"""A refined zero shift beyond this rejects the cell."""
MAX_EDGE = 40.0
"""Largest cell edge tried, angstrom."""
MAX_INDEX = 16
"""Largest ``|h|``, ``|k|``, ``l`` of the reflection tables."""
SEED_LINES = 5
"""Cells are proposed from pairs of the first this many lines."""
KEPT = 24
"""Cells per family refined after the first pass."""


@dataclass(frozen=True)
class IndexedCell:
    """The best cell of one family.

    Attributes:
        family: one of :data:`FAMILIES`.
        a: cell edge ``a``, angstrom.
        c: cell edge ``c``, angstrom (``a`` for cubic).
        zero_deg: the refined zero shift, degrees two-theta (observed minus calculated).
        figure_of_merit: de Wolff's ``M_N`` (module docstring); 0 without a cell.
        n_lines: ``N``, the observed lines scored.
        n_indexed: how many of them the cell indexes.
        n_calculated: distinct calculated lines up to ``Q_N``.
    """

    family: str
    a: float
    c: float
    zero_deg: float
    figure_of_merit: float
    n_lines: int
    n_indexed: int
    n_calculated: int

    @property
    def lattice_system(self) -> str:
        return LATTICE_OF_FAMILY[self.family]

    def two_theta(self, wavelength: float, two_theta_max: float) -> np.ndarray:
        """The cell's distinct calculated lines up to ``two_theta_max``, degrees (no zero)."""
        hexagonal = self.lattice_system in ("hexagonal", "rhombohedral")
        a_star = (4.0 / 3.0 if hexagonal else 1.0) / self.a**2
        m, n = reflection_table(self.family)
        q = np.unique(np.round(a_star * m + n / self.c**2, 10))
        s = wavelength * np.sqrt(q) / 2.0
        return np.rad2deg(2.0 * np.arcsin(s[s <= np.sin(np.deg2rad(two_theta_max) / 2.0)]))


@cache
def reflection_table(family: str) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(m, n)`` of the family's reflections (``Q = A m + C n``), sorted by ``m + n``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown lattice family {family!r}; allowed: {', '.join(FAMILIES)}")
    r = np.arange(-MAX_INDEX, MAX_INDEX + 1)
    h, k, ell = (g.ravel() for g in np.meshgrid(r, r, np.arange(MAX_INDEX + 1), indexing="ij"))
    lattice, centring = family.split()
    if lattice == "cubic":
        keep = (h >= 0) & (k >= 0)
        if centring == "I":
            keep &= (h + k + ell) % 2 == 0
        elif centring == "F":
            keep &= (h % 2 == k % 2) & (k % 2 == ell % 2)
        m, n = h * h + k * k + ell * ell, np.zeros_like(h)
    elif lattice == "tetragonal":
        keep = (h >= 0) & (k >= 0)
        if centring == "I":
            keep &= (h + k + ell) % 2 == 0
        m, n = h * h + k * k, ell * ell
    else:
        keep = np.ones_like(h, dtype=bool)
        if lattice == "rhombohedral":
            keep &= (-h + k + ell) % 3 == 0
        m, n = h * h + h * k + k * k, ell * ell
    keep &= (m + n) > 0
    pairs = np.unique(np.stack([m[keep], n[keep]], axis=1), axis=0)
    order = np.lexsort((pairs[:, 1], pairs[:, 0] + pairs[:, 1]))
    return pairs[order, 0].astype(np.float64), pairs[order, 1].astype(np.float64)


def _q_per_degree(two_theta: np.ndarray, wavelength: float) -> np.ndarray:
    """``dQ / d(2theta)`` per degree: ``(2 / lambda^2) sin(2theta) pi / 180``."""
    return 2.0 / wavelength**2 * np.sin(np.deg2rad(two_theta)) * math.pi / 180.0


def _proposals(family: str, q: np.ndarray) -> np.ndarray:
    """Candidate ``(A, C)`` rows from the first lines given low indices."""
    m, n = reflection_table(family)
    seeds = q[:SEED_LINES]
    if family.startswith("cubic"):
        values = np.unique(m[m <= 60])
        a = (seeds[:, None] / values[None, :]).ravel()
        return np.stack([a, a], axis=1)
    low = (m <= 12) & (n <= 64)
    bm, bn = m[low], n[low]
    out = []
    for i in range(seeds.size):
        for j in range(i + 1, seeds.size):
            mi, mj = bm[:, None], bm[None, :]
            ni, nj = bn[:, None], bn[None, :]
            det = mi * nj - mj * ni
            ok = np.abs(det) > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                a = (seeds[i] * nj - seeds[j] * ni) / det
                c = (mi * seeds[j] - mj * seeds[i]) / det
            ok &= (a > 0) & (c > 0)
            out.append(np.stack([a[ok], c[ok]], axis=1))
    cand = np.concatenate(out) if out else np.zeros((0, 2))
    edge = 2.0 / np.sqrt(3.0) if family.startswith(("hexagonal", "rhombohedral")) else 1.0
    lo = (edge / MAX_EDGE) ** 2
    cand = cand[(cand[:, 0] >= lo) & (cand[:, 1] >= 1.0 / MAX_EDGE**2)]
    return np.unique(np.round(cand, 9), axis=0)


@cache
def _rows(family: str) -> tuple[tuple[float, np.ndarray], ...]:
    """The reflection table grouped by ``n``: ``((n, sorted distinct m), ...)``."""
    m, n = reflection_table(family)
    return tuple((float(v), np.unique(m[n == v])) for v in np.unique(n))


def _nearest(
    family: str, a: np.ndarray, c: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The calculated ``Q`` nearest each line ``q`` ``(L,)`` for cells ``(a, c)`` ``(K,)``.

    Returns ``(Q, m, n)``, each ``(K, L)``.
    """
    shape = (a.size, q.size)
    best = np.full(shape, np.inf)
    best_m, best_n = np.zeros(shape), np.zeros(shape)
    for n_value, ms in _rows(family):
        needed = (q[None, :] - c[:, None] * n_value) / a[:, None]
        i = np.clip(np.searchsorted(ms, needed), 1, max(ms.size - 1, 1))
        for m_try in (ms[i - 1], ms[np.minimum(i, ms.size - 1)]):
            calc = a[:, None] * m_try + c[:, None] * n_value
            closer = np.abs(calc - q[None, :]) < np.abs(best - q[None, :])
            best = np.where(closer, calc, best)
            best_m = np.where(closer, m_try, best_m)
            best_n = np.where(closer, n_value, best_n)
    return best, best_m, best_n


def _allowance(n_lines: int) -> int:
    """Lines of ``n_lines`` a cell may leave unindexed (impurity, noise, a merged doublet)."""
    return n_lines // 10


def _first_pass(family: str, cand: np.ndarray, q: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """The :data:`KEPT` smallest cells that index nearly all lines at the loose tolerance.

    The smallest cell first: a large enough cell indexes any line list (de Wolff's reason
    for counting calculated lines in the figure of merit).
    """
    counts = np.zeros(len(cand), dtype=np.int64)
    for start in range(0, len(cand), 2048):
        part = cand[start : start + 2048]
        calc, _, _ = _nearest(family, part[:, 0], part[:, 1], q)
        counts[start : start + 2048] = (np.abs(calc - q[None, :]) <= tol[None, :]).sum(axis=1)
    volume = 1.0 / (cand[:, 0] * np.sqrt(cand[:, 1]))
    enough = counts >= q.size - 2 * _allowance(q.size)
    order = np.lexsort((volume, ~enough))
    return cand[order[:KEPT]]


def _score(
    family: str,
    a: float,
    c: float,
    q: np.ndarray,
    g: np.ndarray,
    tol: np.ndarray,
    loose: np.ndarray,
) -> IndexedCell | None:
    """Refine one cell with a zero shift on the lines it indexes; its figure of merit.

    The first assignment of indices uses the ``loose`` tolerance, the next ones ``tol``.
    """
    zero = 0.0
    cubic = family.startswith("cubic")
    for step in range(4):
        calc, m, n = _nearest(family, np.array([a]), np.array([c]), q - g * zero)
        calc, m, n = calc[0], m[0], n[0]
        hit = np.abs(q - g * zero - calc) <= (loose if step == 0 else tol)
        if hit.sum() < max(3, q.size - _allowance(q.size)):
            return None
        design = np.stack([m + n, g] if cubic else [m, n, g], axis=1)[hit]
        sol, *_ = np.linalg.lstsq(design, q[hit], rcond=None)
        if cubic:
            a, c, zero = sol[0], sol[0], sol[1]
        else:
            a, c, zero = sol
        if a <= 0 or c <= 0 or abs(zero) > MAX_ZERO_DEG:
            return None
    calc, _, _ = _nearest(family, np.array([a]), np.array([c]), q - g * zero)
    err = np.abs(q - g * zero - calc[0])
    hit = err <= tol
    if hit.sum() < q.size - _allowance(q.size):
        return None
    mm, nn = reflection_table(family)
    q_max = q[-1] - g[-1] * zero
    allowed = np.unique(np.round((a * mm + c * nn)[(a * mm + c * nn) <= q_max * (1 + 1e-9)], 10))
    mean_error = max(float(err[hit].mean()), 1e-7)
    fom = q_max / (2.0 * mean_error * max(allowed.size, 1))
    if family.startswith(("hexagonal", "rhombohedral")):
        edge_a = math.sqrt(4.0 / (3.0 * a))
    else:
        edge_a = math.sqrt(1.0 / a)
    return IndexedCell(
        family=family,
        a=edge_a,
        c=math.sqrt(1.0 / c),
        zero_deg=float(zero),
        figure_of_merit=float(fom),
        n_lines=int(q.size),
        n_indexed=int(hit.sum()),
        n_calculated=int(allowed.size),
    )


def index_lines(
    lines: ObservedLines, families: tuple[str, ...] = FAMILIES
) -> dict[str, IndexedCell | None]:
    """The best cell of each family for the first :data:`MAX_LINES` lines (module docstring).

    Returns ``{family: cell or None}``; ``None`` where the scan has fewer lines than
    :data:`MIN_LINES` of the family's lattice or no cell of the family indexes them.
    """
    two_theta = lines.two_theta[:MAX_LINES]
    q = lines.q[:MAX_LINES]
    g = _q_per_degree(two_theta, lines.wavelength)
    loose = g * SEARCH_TOLERANCE_DEG + q * SEARCH_TOLERANCE_Q
    out: dict[str, IndexedCell | None] = {}
    for family in families:
        if q.size < MIN_LINES[LATTICE_OF_FAMILY[family]]:
            out[family] = None
            continue
        cand = _proposals(family, q)
        best: IndexedCell | None = None
        if len(cand):
            for a, c in _first_pass(family, cand, q, loose):
                cell = _score(family, float(a), float(c), q, g, g * TOLERANCE_DEG, loose)
                if cell is not None and (
                    best is None or cell.figure_of_merit > best.figure_of_merit
                ):
                    best = cell
        out[family] = best
    return out
