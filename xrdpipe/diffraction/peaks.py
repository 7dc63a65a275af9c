r"""Batched powder-XRD peak lists of one structure under many homogeneous strains.

This reproduces ``pymatgen.analysis.diffraction.xrd.XRDCalculator.get_pattern`` (pymatgen
2026.10.24) rule for rule, for a whole batch of strained lattices of one structure at once.
The algorithm, for each strain ``eps`` (lattice rows ``a_i' = (I + eps) a_i``):

1. Reciprocal lattice ``B' = A'^{-T}`` (rows, no 2 pi). Keep the points ``g = (hkl) B'``
   with ``min_r <= |g| <= max_r``, where ``r = 2 sin(two_theta / 2) / lambda`` at the
   two ends of ``two_theta_range``; keep one Friedel half-space (``hkl`` lexicographically
   positive) and count each point twice, as pymatgen does.
2. Bragg angle ``sin(theta) = lambda |g| / 2`` and ``s = |g| / 2 = sin(theta) / lambda``.
3. Atomic scattering factor per element (pymatgen's fitted coefficients)

       f(s) = Z - 41.78214 s^2 \sum_i a_i \exp(-b_i s^2),

   times ``exp(-B s^2)`` if a Debye-Waller factor ``B`` is given for the element.
4. Structure factor, occupancy weighted over all sites ``j``

       F_{hkl} = \sum_e f_e(s) \sum_{j \in e} occ_j \exp(2 \pi i (hkl) \cdot r_j).

5. Intensity ``I = 2 |F|^2 (1 + \cos^2 2\theta) / (\sin^2\theta \cos\theta)``
   (Lorentz-polarisation; the 2 is the other Friedel half).
6. Merge reflections whose ``round(two_theta / TWO_THETA_TOL)`` agree (pymatgen's binning):
   intensities add; the peak's ``two_theta`` and ``d = 1/|g|`` are those of its first
   reflection in pymatgen's order ``(|g|, -h, -k, -l)``.
7. Drop peaks with ``100 I / I_max <= SCALED_INTENSITY_TOL`` and scale to 100 at the max.

The fractional coordinates do not change under homogeneous strain, so the phase sums of
step 4 are computed once per structure and element and reused for every strain; only
``|g|`` (hence s, f, Lorentz-polarisation, two_theta) changes. Reflections are enumerated
once over the union of every strain's limiting shell and masked per strain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.diffraction.core import AbstractDiffractionPatternCalculator
from pymatgen.analysis.diffraction.xrd import WAVELENGTHS
from pymatgen.core import Structure

from xrdpipe.diffraction.scattering import (
    ScatteringModel,
    phase_sums,
    scattering_model,
    squared_structure_factor,
)
from xrdpipe.diffraction.strain import apply_strain
from xrdpipe.errors import StructureError

SIMULATOR_VERSION = "1.0.0+pymatgen-2026.10.24-rules"
"""Stored with every pattern store; bump when any output can change."""

TWO_THETA_TOL = AbstractDiffractionPatternCalculator.TWO_THETA_TOL
"""Degrees (1e-5): reflections in the same ``round(two_theta / tol)`` bin are one peak
(pymatgen's rule, so symmetry-equivalent reflections merge despite rounding)."""

SCALED_INTENSITY_TOL = AbstractDiffractionPatternCalculator.SCALED_INTENSITY_TOL
"""Peaks at or below 1e-3 of 100 are dropped: systematic absences that do not cancel
exactly in floating point (pymatgen's rule)."""

HEX_ANGLE_TOL = 5.0
"""Degrees; pymatgen's ``Lattice.is_hexagonal`` default, which decides 4-index families."""

HEX_LENGTH_TOL = 0.01
"""Angstrom; pymatgen's ``Lattice.is_hexagonal`` default."""

DEFAULT_MAX_REFLECTIONS = 2_000_000
"""Most candidate reflections (half-space hkl) per structure before we refuse: beyond this
a single structure would take minutes and gigabytes (cells of thousands of sites)."""

CHUNK_ELEMENTS = 1 << 16
"""(strain x reflection) elements per batch: 512 KB per float64 temporary. Small blocks
stay in cache and are recycled by the allocator; multi-MB temporaries are mapped fresh by
glibc each time and cost a page fault per 4 KB (measured: up to 30 % of the run time in
system time at 2^19)."""

_RADIUS_MARGIN = 1e-9
"""Relative margin on the candidate shell, so rounding never loses a boundary point."""

_ORDER_QUANTUM = 1e-9
"""1/angstrom; unstrained |g| closer than this count as equal when pre-ordering reflections."""

_QUANT_MAX = (1 << 32) - 1
"""Invalid points' bin in the radix sort; valid |g| fill bins 0 .. 2^32 - 2."""

_CODE_BITS = 21
_CODE_OFFSET = 1 << (_CODE_BITS - 1)
_SIG_BITS = 15


@dataclass(frozen=True)
class PeakTable:
    """Peak lists of one structure under S strains, padded to P peaks.

    Peaks are sorted by ``two_theta`` ascending in each row; padding sits at the end and is
    zero everywhere (``mask`` False).

    Attributes:
        two_theta: (S, P) float64, degrees.
        intensity: (S, P) float64, scaled so each row's maximum is 100 (pymatgen
            ``scaled=True``).
        intensity_raw: (S, P) float64, the unscaled integrated intensity (pymatgen
            ``scaled=False``), electrons^2 times the Lorentz-polarisation factor.
        d_spacing: (S, P) float64, angstrom.
        multiplicity: (S, P) int32, number of reflections merged into the peak (the sum of
            the multiplicities of pymatgen's families for that peak).
        hkl: (S, P, 3) int32, pymatgen's first family representative: the lexicographically
            largest member of the family (same sorted |h|, |k|, |l|; |h|, |k|, |i|, |l| for
            hexagonal lattices) of the first reflection of the peak, written as (h, k, l).
        mask: (S, P) bool, True for real peaks.
        n_peaks: (S,) int32.
        volume: (S,) float64, cell volume, angstrom^3.
        density: (S,) float64, g/cm^3.
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    intensity_raw: np.ndarray
    d_spacing: np.ndarray
    multiplicity: np.ndarray
    hkl: np.ndarray
    mask: np.ndarray
    n_peaks: np.ndarray
    volume: np.ndarray
    density: np.ndarray

    @property
    def n_strains(self) -> int:
        """Number of strain conditions S."""
        return int(self.two_theta.shape[0])

    @property
    def max_peaks(self) -> int:
        """Padded peak dimension P."""
        return int(self.two_theta.shape[1])


def wavelength_angstrom(wavelength: str | float) -> float:
    """A pymatgen wavelength name (``CuKa``) or a value, in angstrom."""
    if isinstance(wavelength, str):
        if wavelength not in WAVELENGTHS:
            raise ValueError(f"wavelength {wavelength!r} is not one of {sorted(WAVELENGTHS)}")
        return float(WAVELENGTHS[wavelength])
    if isinstance(wavelength, int | float) and wavelength > 0:
        return float(wavelength)
    raise ValueError(f"wavelength={wavelength!r} must be a name or a positive float (angstrom)")


def _radii(wavelength: float, two_theta_range: tuple[float, float] | None) -> tuple[float, float]:
    if two_theta_range is None:
        return 0.0, 2.0 / wavelength
    lo, hi = two_theta_range
    return tuple(2 * math.sin(math.radians(t / 2)) / wavelength for t in (lo, hi))  # type: ignore[return-value]


def _half_space_box(bounds: np.ndarray) -> np.ndarray:
    """Integer hkl in the box |h_i| <= bounds_i with hkl lexicographically positive."""
    hb, kb, lb = (int(b) for b in bounds)
    h = np.arange(0, hb + 1)
    k = np.arange(-kb, kb + 1)
    ell = np.arange(-lb, lb + 1)
    hh, kk, ll = np.meshgrid(h, k, ell, indexing="ij")
    hkl = np.stack([hh.ravel(), kk.ravel(), ll.ravel()], axis=1)
    half = (hkl[:, 0] > 0) | ((hkl[:, 0] == 0) & (hkl[:, 1] > 0))
    half |= (hkl[:, 0] == 0) & (hkl[:, 1] == 0) & (hkl[:, 2] > 0)
    return hkl[half]


def _candidate_reflections(
    lattice_matrix: np.ndarray,
    min_r: float,
    max_r: float,
    stretch: float,
    max_reflections: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Half-space hkl whose unstrained |g| lies in [min_r (1 - e), max_r (1 + e)].

    A strain with spectral norm e maps |g| into [|g| / (1 + e), |g| / (1 - e)], so this
    shell holds every reflection any such strain brings into [min_r, max_r].
    """
    lo = min_r * (1 - stretch) * (1 - _RADIUS_MARGIN)
    hi = max_r * (1 + stretch) * (1 + _RADIUS_MARGIN)
    lengths = np.linalg.norm(lattice_matrix, axis=1)
    bounds = np.floor(hi * lengths)  # |h_i| = |g . a_i| <= |g| |a_i|
    box = (bounds[0] + 1) * (2 * bounds[1] + 1) * (2 * bounds[2] + 1) / 2
    # the shell fills a good part of its bounding box for ordinary cells and ranges; this
    # guard only keeps the box itself (24 bytes a point) from exhausting memory
    if box > 4 * max_reflections or np.any(bounds >= 1 << (_SIG_BITS - 1)):
        raise StructureError(
            "simulate",
            "too_many_reflections",
            f"a box of {int(box)} hkl exceeds 4 x max_reflections={max_reflections}",
        )
    hkl = _half_space_box(bounds)
    recip = np.linalg.inv(lattice_matrix).T
    g = np.linalg.norm(hkl @ recip, axis=1)
    keep = (g <= hi) & (g >= lo)
    hkl, g = hkl[keep], g[keep]
    if len(hkl) > max_reflections:
        raise StructureError(
            "simulate",
            "too_many_reflections",
            f"{len(hkl)} candidate reflections exceed max_reflections={max_reflections}",
        )
    # pymatgen's order (|g|, -h, -k, -l), with |g| quantised so that reflections equal up
    # to rounding fall back on (-h, -k, -l): a stable sort by each strain's |g| then breaks
    # exact ties as pymatgen does, and starts from nearly sorted rows
    g_key = np.round(g / _ORDER_QUANTUM)
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], g_key))
    return hkl[order], g[order]


def reflection_upper_bound(
    structure: Structure,
    max_strain: float,
    wavelength: str | float = "CuKa",
    two_theta_range: tuple[float, float] | None = (10.0, 80.0),
) -> int:
    """An upper bound on the number of peaks for any strain of amplitude <= max_strain.

    Every peak holds at least one half-space reflection, and a symmetric strain with
    entries at most ``max_strain`` has spectral norm at most ``3 max_strain``, so the count
    of half-space reflections of the unstrained lattice in the widened shell bounds it.

    Args:
        structure: the crystal.
        max_strain: the amplitude bound, max |eps_ij|.
        wavelength: a pymatgen wavelength name or a value in angstrom.
        two_theta_range: degrees (``None``: the whole limiting sphere).

    Returns:
        The bound (>= 1).
    """
    lam = wavelength_angstrom(wavelength)
    min_r, max_r = _radii(lam, two_theta_range)
    hkl, _ = _candidate_reflections(
        structure.lattice.matrix, min_r, max_r, 3 * max_strain, DEFAULT_MAX_REFLECTIONS
    )
    return max(1, len(hkl))


def _encode(cols: list[np.ndarray], bits: int, offset: int) -> np.ndarray:
    code = np.zeros(len(cols[0]), dtype=np.int64)
    for c in cols:
        code = (code << bits) | (c.astype(np.int64) + offset)
    return code


def _family_codes(hkl: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lexicographic hkl code and the family signatures (sorted |indices|), 3 and 4 index."""
    h, k, ell = hkl.T
    code = _encode([h, k, ell], _CODE_BITS, _CODE_OFFSET)
    a3 = np.sort(np.abs(hkl), axis=1)
    sig3 = _encode(list(a3.T), _SIG_BITS, 0)
    a4 = np.sort(np.abs(np.stack([h, k, h + k, ell], axis=1)), axis=1)
    sig4 = _encode(list(a4.T), _SIG_BITS, 0)
    return code, sig3, sig4


def _decode(code: np.ndarray) -> np.ndarray:
    mask = (1 << _CODE_BITS) - 1
    out = np.empty((len(code), 3), dtype=np.int32)
    for i in range(3):
        out[:, 2 - i] = ((code >> (_CODE_BITS * i)) & mask) - _CODE_OFFSET
    return out


def _is_hexagonal(matrices: np.ndarray) -> np.ndarray:
    """Batched pymatgen ``Lattice.is_hexagonal`` over lattice matrices (S, 3, 3)."""
    lengths = np.linalg.norm(matrices, axis=2)
    angles = np.empty_like(lengths)
    for dim in range(3):
        j, k = (dim + 1) % 3, (dim + 2) % 3
        cos = np.einsum("si,si->s", matrices[:, j], matrices[:, k]) / (
            lengths[:, j] * lengths[:, k]
        )
        angles[:, dim] = np.rad2deg(np.arccos(np.clip(cos, -1, 1)))
    right = np.abs(angles - 90) <= HEX_ANGLE_TOL
    hexa = (np.abs(angles - 60) <= HEX_ANGLE_TOL) | (np.abs(angles - 120) <= HEX_ANGLE_TOL)
    ok = (right.sum(axis=1) == 2) & (hexa.sum(axis=1) == 1)
    # the two right angles' lengths must agree: the odd one out is the hexagonal angle
    odd = np.argmin(right, axis=1)
    pair = np.array([[1, 2], [0, 2], [0, 1]])[odd]
    rows = np.arange(len(matrices))
    same = np.abs(lengths[rows, pair[:, 0]] - lengths[rows, pair[:, 1]]) <= HEX_LENGTH_TOL
    return ok & same


def _reciprocal_norms(recip: np.ndarray, hkl_f: np.ndarray) -> np.ndarray:
    """|g| for (S, 3, 3) reciprocal rows and (M, 3) hkl, bit for bit as pymatgen.

    pymatgen's ``get_points_in_sphere`` gets the Cartesian point ``h b1 + k b2 + l b3``
    (summed in that order) and its length ``sqrt(x^2 + y^2 + z^2)``; the same operations in
    the same order give the same last bits, so exact ties (symmetry-equivalent reflections of
    different families) are broken in the same way.
    """
    h, k, ell = (hkl_f[:, i][None, :] for i in range(3))
    n_s, n_m = len(recip), len(hkl_f)
    out = np.zeros((n_s, n_m))
    comp = np.empty((n_s, n_m))
    tmp = np.empty((n_s, n_m))
    for c in range(3):
        np.multiply(recip[:, 0, c][:, None], h, out=comp)
        np.multiply(recip[:, 1, c][:, None], k, out=tmp)
        comp += tmp
        np.multiply(recip[:, 2, c][:, None], ell, out=tmp)
        comp += tmp
        comp *= comp
        out += comp
    return np.sqrt(out, out=out)


def _sort_rows(
    g: np.ndarray, valid: np.ndarray, min_r: float, max_r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stable argsort of each row by |g| (invalid points last, as +inf), and the sorted |g|.

    Equal to ``np.argsort(g, axis=1, kind="stable")`` but about twice as fast: two stable
    16-bit radix passes on |g| quantised to 32 bits (monotone, so the order is right
    between different bins and stable inside one), then rows with an inversion inside a
    bin, which are rare, are re-sorted exactly; a stable re-sort keeps the index order of
    equal values, so ties are broken as by the plain stable sort.
    """
    scale = (_QUANT_MAX - 1) / (max_r - min_r)
    quant = np.where(valid, np.clip((g - min_r) * scale, 0, _QUANT_MAX - 1), _QUANT_MAX)
    quant = quant.astype(np.uint32)
    order = np.argsort((quant & 0xFFFF).astype(np.uint16), axis=1, kind="stable")
    high = np.take_along_axis((quant >> 16).astype(np.uint16), order, axis=1)
    order = np.take_along_axis(order, np.argsort(high, axis=1, kind="stable"), axis=1)
    g = np.where(valid, g, np.inf)
    g = np.take_along_axis(g, order, axis=1)
    bad = np.flatnonzero((g[:, 1:] < g[:, :-1]).any(axis=1))
    if len(bad):
        fix = np.argsort(g[bad], axis=1, kind="stable")
        order[bad] = np.take_along_axis(order[bad], fix, axis=1)
        g[bad] = np.take_along_axis(g[bad], fix, axis=1)
    return order, g


@dataclass
class _Batch:
    row: np.ndarray
    two_theta: np.ndarray
    intensity_raw: np.ndarray
    intensity: np.ndarray
    d_spacing: np.ndarray
    multiplicity: np.ndarray
    hkl: np.ndarray


def _simulate_batch(
    recip: np.ndarray,
    is_hex: np.ndarray,
    hkl_f: np.ndarray,
    codes: tuple[np.ndarray, np.ndarray, np.ndarray],
    phase: tuple[np.ndarray, np.ndarray],
    model: ScatteringModel,
    wavelength: float,
    min_r: float,
    max_r: float,
) -> _Batch:
    """Peaks of a batch of strains; rows of the result refer to the batch's strains."""
    n_s = len(recip)
    g = _reciprocal_norms(recip, hkl_f)
    valid = (g >= min_r) & (g <= max_r)
    order, g = _sort_rows(g, valid, min_r, max_r)
    valid = np.isfinite(g)
    row = np.broadcast_to(np.arange(n_s)[:, None], g.shape)[valid]
    hidx = order[valid]
    g = g[valid]
    n = len(g)
    if n == 0:
        empty = np.empty(0)
        return _Batch(
            np.empty(0, np.int64), empty, empty, empty, empty, np.empty(0, np.int32),
            np.empty((0, 3), np.int32),
        )  # fmt: skip

    # steps 2-5 on the flat list of (strain, reflection) pairs, in pymatgen's operation order
    sint = np.clip(wavelength * g / 2, -1, 1)
    theta = np.arcsin(sint)
    half_g = g / 2
    s2 = half_g * half_g
    i_hkl = squared_structure_factor(s2, hidx, phase, model.species, model.dw, model.anomalous)
    # sin(theta) is known, so cos(theta) and cos(2 theta) follow without more
    # transcendental calls (equal to pymatgen's cos/sin of arcsin within a few ulp)
    sin2 = sint * sint
    cost = np.sqrt(1 - sin2)
    cos2t = 1 - 2 * sin2
    lorentz = (1 + cos2t * cos2t) / (sin2 * cost)
    intensities = 2 * i_hkl * lorentz
    two_theta = np.degrees(2 * theta)

    # step 6: bins are monotone in |g|, so equal bins are contiguous runs of each row
    keys = np.rint(two_theta / TWO_THETA_TOL)  # exact integers in float64; compared only
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    new[1:] |= row[1:] != row[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, n))
    # a reflection belongs to a peak of several iff it does not both open and close its run;
    # reduceat pays per segment, so only those go through it (most peaks are single
    # reflections under a general strain)
    closes = np.empty(n, dtype=bool)
    closes[-1] = True
    closes[:-1] = new[1:]
    in_multi = ~(new & closes)
    merged = intensities[starts]
    peak_row = row[starts]
    code, sig3, sig4 = codes
    rep = code[hidx[starts]]
    if in_multi.any():
        multi = np.flatnonzero(counts > 1)
        m_new = new[in_multi]
        m_starts = np.flatnonzero(m_new)
        merged[multi] = np.add.reduceat(intensities[in_multi], m_starts)
        # family representative: the largest member of the first reflection's family
        m_hidx, m_row = hidx[in_multi], row[in_multi]
        member_sig = np.where(is_hex[m_row], sig4[m_hidx], sig3[m_hidx])
        group = np.cumsum(m_new) - 1
        first_sig = member_sig[m_starts][group]
        cand = np.where(member_sig == first_sig, code[m_hidx], np.iinfo(np.int64).min)
        rep[multi] = np.maximum.reduceat(cand, m_starts)

    # step 7: per-row maximum, threshold and scale
    row_first = np.flatnonzero(np.r_[True, peak_row[1:] != peak_row[:-1]])
    row_max = np.zeros(n_s)
    row_max[peak_row[row_first]] = np.maximum.reduceat(merged, row_first)
    peak_max = row_max[peak_row]
    keep = merged / peak_max * 100 > SCALED_INTENSITY_TOL

    return _Batch(
        row=peak_row[keep],
        two_theta=two_theta[starts][keep],
        intensity_raw=merged[keep],
        intensity=(merged / (peak_max / 100))[keep],
        d_spacing=(1 / g[starts])[keep],
        multiplicity=(2 * counts[keep]).astype(np.int32),
        hkl=_decode(rep[keep]),
    )


def _check_width(width: int, max_peaks: int) -> None:
    if width > max_peaks:
        raise StructureError(
            "simulate", "too_many_reflections", f"{width} peaks exceed max_peaks={max_peaks}"
        )


_FIELDS = {
    "two_theta": (np.float64, ()),
    "intensity": (np.float64, ()),
    "intensity_raw": (np.float64, ()),
    "d_spacing": (np.float64, ()),
    "multiplicity": (np.int32, ()),
    "hkl": (np.int32, (3,)),
    "mask": (np.bool_, ()),
}


def _allocate(n_s: int, width: int) -> dict[str, np.ndarray]:
    return {name: np.zeros((n_s, width, *extra), dtype) for name, (dtype, extra) in _FIELDS.items()}


def _scatter(out: dict[str, np.ndarray], batch: _Batch, rows: slice, n_peaks: np.ndarray) -> None:
    """Copy a batch's peaks into the padded arrays of its rows.

    The batch lists its peaks row by row in two_theta order, which is exactly the
    row-major order of the True entries of the rows' padding mask, so one boolean
    assignment per field places them (far cheaper than (row, column) fancy indexing).
    """
    width = out["mask"].shape[1]
    real = np.arange(width) < n_peaks[rows][:, None]
    out["mask"][rows] = real
    for name in _FIELDS:
        if name != "mask":
            out[name][rows][real] = getattr(batch, name)


def simulate_peaks(
    structure: Structure,
    strains: np.ndarray,
    wavelength: str | float = "CuKa",
    two_theta_range: tuple[float, float] | None = (10.0, 80.0),
    debye_waller_factors: Mapping[str, float] | None = None,
    max_peaks: int | None = None,
    max_reflections: int = DEFAULT_MAX_REFLECTIONS,
    scattering: str = "pymatgen",
    displacement: str = "overall",
    overall_b: float = 0.0,
) -> PeakTable:
    """Peak lists of a structure under many homogeneous strains (pymatgen's rules).

    The defaults reproduce pymatgen's ``XRDCalculator``; ``scattering="anomalous"`` adds
    ``f' + i f''`` at the wavelength's energy, ``scattering="tables"`` also replaces
    pymatgen's ``f0`` fit by Waasmaier-Kirfel's, and ``displacement``/``overall_b`` add a
    Debye-Waller factor ``exp(-B s^2)`` per site (see :func:`scattering.scattering_model`).

    Args:
        structure: the unstrained crystal (may be partially occupied).
        strains: symmetric Cartesian strain tensors, (S, 3, 3) (or one (3, 3)).
        wavelength: a pymatgen wavelength name (``CuKa``) or a value in angstrom.
        two_theta_range: degrees; ``None`` for the whole limiting sphere.
        debye_waller_factors: ``{element symbol: B}`` in angstrom^2, as pymatgen's.
        max_peaks: pad to this many peaks P (default: the most peaks of any strain).
        max_reflections: refuse structures with more candidate reflections than this.
        scattering: ``pymatgen`` (its real ``f0``), ``anomalous`` (that ``f0`` and Chantler
            ``f'``, ``f''``) or ``tables`` (Waasmaier-Kirfel ``f0`` and Chantler ``f'``,
            ``f''``).
        displacement: ``overall`` (every site ``overall_b``) or ``cif`` (the sites'
            ``b_iso`` property where given, else ``overall_b``; a structure without the
            property is refused: ``attach_displacements`` it first).
        overall_b: one ``B`` for the phase, angstrom^2 (0: none).

    Returns:
        The :class:`PeakTable`.

    Raises:
        StructureError: ``stage='simulate'`` with reason ``no_scattering_factors``,
            ``too_many_reflections`` (also when a strain has more than ``max_peaks``
            peaks) or ``non_finite``.
    """
    strains = np.asarray(strains, dtype=np.float64)
    if strains.ndim == 2:
        strains = strains[None]
    if strains.ndim != 3 or strains.shape[1:] != (3, 3):
        raise ValueError(f"strains of shape {strains.shape} must be (S, 3, 3)")
    lam = wavelength_angstrom(wavelength)
    min_r, max_r = _radii(lam, two_theta_range)
    model = scattering_model(
        structure, lam, debye_waller_factors, scattering, displacement, overall_b
    )

    lattice = structure.lattice.matrix
    matrices = apply_strain(lattice, strains)  # (S, 3, 3)
    n_s = len(strains)
    sym = 0.5 * (strains + np.swapaxes(strains, 1, 2))
    stretch = float(np.abs(np.linalg.eigvalsh(sym)).max()) if n_s else 0.0
    asym = float(np.abs(strains - sym).max()) if n_s else 0.0
    stretch += 2 * asym  # a non-symmetric part adds a rotation; widen the shell to be safe
    if stretch >= 1:
        raise ValueError(f"strain of spectral norm {stretch:.3g} must be below 1")
    hkl, _ = _candidate_reflections(lattice, min_r, max_r, stretch, max_reflections)

    # cached per structure: phase sums, family codes, |g|^2 monomials
    phase = phase_sums(hkl, model.species)
    codes = _family_codes(hkl)
    hf = hkl.astype(np.float64)
    # pymatgen's reciprocal_lattice_crystallographic, operation for operation
    recip = (np.swapaxes(np.linalg.inv(matrices), 1, 2) * 2 * np.pi) / (2 * np.pi)
    is_hex = _is_hexagonal(matrices)

    rows_per_batch = max(1, CHUNK_ELEMENTS // max(1, len(hkl)))
    n_peaks = np.zeros(n_s, dtype=np.int32)
    out: dict[str, np.ndarray] = {}
    pending: list[tuple[slice, _Batch]] = []
    for start in range(0, n_s, rows_per_batch):
        sl = slice(start, start + rows_per_batch)
        batch = _simulate_batch(recip[sl], is_hex[sl], hf, codes, phase, model, lam, min_r, max_r)
        batch.row += start
        n_peaks[sl] = np.bincount(batch.row - start, minlength=len(recip[sl]))
        if max_peaks is not None:
            _check_width(int(n_peaks[sl].max(initial=0)), max_peaks)
            out = out or _allocate(n_s, max_peaks)
            _scatter(out, batch, sl, n_peaks)  # the padded table is the only big allocation
        else:
            pending.append((sl, batch))
    if max_peaks is None:
        out = _allocate(n_s, int(n_peaks.max(initial=0)))
        while pending:  # free each batch as soon as it is copied
            sl, batch = pending.pop()
            _scatter(out, batch, sl, n_peaks)
    elif not out:
        out = _allocate(n_s, max_peaks)

    volume = np.abs(np.linalg.det(matrices))
    density = float(structure.density) * float(structure.volume) / volume
    table = PeakTable(**out, n_peaks=n_peaks, volume=volume, density=density)
    for name in ("two_theta", "intensity", "intensity_raw", "d_spacing", "volume", "density"):
        if not np.all(np.isfinite(getattr(table, name))):
            raise StructureError("simulate", "non_finite", f"{name} has non-finite values")
    return table
