"""How alike two phases' clean powder patterns are: pairs a phase set cannot tell apart.

Each phase's stick pattern (:func:`~xrdpipe.diffraction.peaks.simulate_peaks`, unstrained, at
the subset's wavelength and two-theta range) is broadened by a Gaussian of fixed width in
``ln d`` on a common grid and scaled to unit norm. The similarity of two phases is the
cosine of their profiles maximised over a relative isotropic lattice scaling of up to
:data:`MAX_RELATIVE_SCALE` (a shift along ``ln d``): training jitters every lattice by about
1 %, so two phases whose patterns coincide after such a scaling look alike to a model, and
to a refinement whose cells are free.

Measured on COD entries (``/work/shared/cod-sample``, Cu K-alpha1, 10-80 degrees): the same
compound refined twice 0.96-1.00 (NiAl2O4 9005952/9005953 0.999, pyrope 9000618/9013162
1.000, Mn 9008589/9011108 0.999, kyanite 9001833/9001838 0.962, Sr11Mo4O23 2300576/2300577
0.995); isostructural Na2MoO4/Na2WO4 (a within 0.2 %) 0.976; isostructural but
distinguishable KLaS2/KPrS2 0.605, NaLuS2/NaYS2 0.507, KLaS2/KYS2 (a 6 % apart) 0.150;
unrelated PdO/BaTiO3 0.083, As/Sb 0.079.
:data:`SIMILARITY_THRESHOLD` = 0.9 sits between the two groups
(``tests/diffraction/test_similarity.py`` keeps these measurements).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from xrdpipe.diffraction.peaks import simulate_peaks
from xrdpipe.errors import StructureError

SIMILARITY_THRESHOLD = 0.9
"""Cosine similarity above which two phases are reported as indistinguishable."""

MAX_RELATIVE_SCALE = 0.02
"""Largest relative isotropic lattice scaling searched (twice a 1 % jitter)."""

LOG_D_STEP = 5e-4
"""Grid step in ``ln d`` (0.05 % in d)."""

LOG_D_FWHM = 4e-3
"""Peak width in ``ln d`` (0.4 % in d: ~0.25 degrees two-theta at 60 degrees, Cu)."""


class IndistinguishablePhasesWarning(UserWarning):
    """Two phases of a set have clean patterns at least :data:`SIMILARITY_THRESHOLD` alike."""


@dataclass(frozen=True)
class SimilarPair:
    """Two phases whose clean patterns are alike.

    Attributes:
        first: the first phase's name.
        second: the second phase's name.
        similarity: the maximised cosine similarity, in [0, 1].
        relative_scale: the lattice scaling of ``first`` (d times this) that best matches.
    """

    first: str
    second: str
    similarity: float
    relative_scale: float


def log_d_profiles(
    d_spacings: Sequence[np.ndarray],
    intensities: Sequence[np.ndarray],
    d_range: tuple[float, float],
) -> np.ndarray:
    """Unit-norm Gaussian-broadened profiles on an even ``ln d`` grid, ``(n_phases, n_grid)``.

    Args:
        d_spacings: each phase's peak d-spacings, angstrom.
        intensities: each phase's peak intensities (any scale).
        d_range: ``(d_min, d_max)`` of the grid, angstrom.
    """
    lo, hi = math.log(d_range[0]), math.log(d_range[1])
    grid = np.arange(lo, hi + LOG_D_STEP, LOG_D_STEP)
    sigma = LOG_D_FWHM / (2 * math.sqrt(2 * math.log(2)))
    out = np.zeros((len(d_spacings), len(grid)))
    for k, (d, i) in enumerate(zip(d_spacings, intensities, strict=True)):
        x = np.log(np.asarray(d, dtype=np.float64))
        out[k] = (np.asarray(i)[:, None] * np.exp(-0.5 * ((grid - x[:, None]) / sigma) ** 2)).sum(0)
        norm = np.linalg.norm(out[k])
        if norm > 0:
            out[k] /= norm
    return out


def profile_similarity(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise cosine similarity, maximised over shifts of up to :data:`MAX_RELATIVE_SCALE`.

    Args:
        profiles: ``(n, n_grid)`` unit-norm profiles from :func:`log_d_profiles`.

    Returns:
        ``(similarity, scale)``, each ``(n, n)``: the best cosine and the relative scaling
        of row phase's d-spacings at which it is reached.
    """
    n_shift = int(round(math.log1p(MAX_RELATIVE_SCALE) / LOG_D_STEP))
    n = len(profiles)
    best = np.full((n, n), -np.inf)
    shift_of = np.zeros((n, n), dtype=int)
    width = profiles.shape[1]
    for s in range(-n_shift, n_shift + 1):
        shifted = np.zeros_like(profiles)  # row phase's d times exp(s * step)
        if s >= 0:
            shifted[:, s:] = profiles[:, : width - s]
        else:
            shifted[:, :s] = profiles[:, -s:]
        cos = shifted @ profiles.T
        better = cos > best
        best[better] = cos[better]
        shift_of[better] = s
    return np.clip(best, 0.0, 1.0), np.exp(shift_of * LOG_D_STEP)


def similar_phases(
    names: Sequence[str],
    structures: Sequence[Structure],
    wavelength: float,
    two_theta_range: tuple[float, float],
    threshold: float = SIMILARITY_THRESHOLD,
) -> list[SimilarPair]:
    """Pairs of phases whose clean patterns are at least ``threshold`` alike, most alike first.

    Args:
        names: the phases' names.
        structures: their structures.
        wavelength: angstrom (the subset's).
        two_theta_range: degrees (the subset's).
        threshold: cosine similarity in (0, 1].

    Returns:
        One :class:`SimilarPair` per pair at or above the threshold (a phase without a
        simulable pattern is left out).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1]")
    keep, ds, its = [], [], []
    for name, structure in zip(names, structures, strict=True):
        try:
            table = simulate_peaks(structure, np.zeros((1, 3, 3)), wavelength, two_theta_range)
        except StructureError:
            continue
        mask = table.mask[0]
        if mask.any():
            keep.append(name)
            ds.append(table.d_spacing[0][mask])
            its.append(table.intensity[0][mask])
    if len(keep) < 2:
        return []
    theta = np.radians(np.asarray(two_theta_range, dtype=np.float64) / 2)
    d_range = (wavelength / (2 * math.sin(theta[1])), wavelength / (2 * math.sin(theta[0])))
    widen = 1 + 2 * MAX_RELATIVE_SCALE  # room for the shifted peaks
    similarity, scale = profile_similarity(
        log_d_profiles(ds, its, (d_range[0] / widen, d_range[1] * widen))
    )
    pairs = [
        SimilarPair(keep[i], keep[j], float(similarity[i, j]), float(scale[i, j]))
        for i in range(len(keep))
        for j in range(i + 1, len(keep))
        if similarity[i, j] >= threshold
    ]
    return sorted(pairs, key=lambda p: -p.similarity)
