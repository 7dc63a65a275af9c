"""Atomic scattering factors and structure factors, with pymatgen's fitted coefficients.

pymatgen's ``XRDCalculator`` uses, for each element, four fitted pairs ``(a_i, b_i)`` and

    f(s) = Z - 41.78214 * s^2 * sum_i a_i exp(-b_i s^2),   s = sin(theta) / lambda (1/angstrom)

We read the very same ``atomic_scattering_params.json`` that pymatgen ships (once per
process), so the simulator and pymatgen cannot drift apart on the coefficients. The
structure factor is split into what a strain cannot change, the per-element phase sums
(:func:`phase_sums`, cached per structure), and what it does, the form factors at each
strained ``s`` (:func:`squared_structure_factor`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.periodic_table import Element

from xrdpipe.errors import StructureError

SCATTERING_PREFACTOR = 41.78214
"""The constant of pymatgen's fit, f = Z - 41.78214 s^2 sum a_i exp(-b_i s^2)."""


@cache
def scattering_params() -> dict[str, np.ndarray]:
    """All fitted coefficients, keyed by element symbol.

    Returns:
        ``{symbol: array (n_coeff, 2)}`` with columns ``a_i`` (dimensionless) and ``b_i``
        (angstrom^2); read-only arrays, loaded once per process.
    """
    path = resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json"
    raw = json.loads(path.read_text())
    params: dict[str, np.ndarray] = {}
    for symbol, coeff in raw.items():
        arr = np.asarray(coeff, dtype=np.float64)
        arr.setflags(write=False)
        params[symbol] = arr
    return params


def has_scattering_factors(element_symbol: str) -> bool:
    """Whether pymatgen's fit has coefficients for an element (``"Fe"``, not ``"Fe2+"``).

    Args:
        element_symbol: an element symbol.

    Returns:
        True if :func:`scattering_coefficients` would succeed.
    """
    return element_symbol in scattering_params()


def scattering_coefficients(element_symbol: str) -> tuple[int, np.ndarray]:
    """The atomic number and the fitted ``(a_i, b_i)`` of one element.

    Args:
        element_symbol: an element symbol with coefficients (see :func:`has_scattering_factors`).

    Returns:
        ``(Z, coeff)`` with ``coeff`` of shape ``(n_coeff, 2)``.

    Raises:
        KeyError: the element has no fitted coefficients.
    """
    params = scattering_params()
    if element_symbol not in params:
        raise KeyError(
            f"element {element_symbol!r} has no atomic scattering factors; "
            f"allowed: the {len(params)} elements of pymatgen's atomic_scattering_params.json"
        )
    return int(Element(element_symbol).Z), params[element_symbol]


FORM_FACTOR_BLOCK = 1 << 17
"""(coefficient x point) entries per block of exponentials (1 MB: stays in cache)."""

PHASE_CHUNK_ENTRIES = 1 << 21
"""(reflection x site) entries per block of the once-per-structure phase sums (32 MB)."""


@dataclass(frozen=True)
class SpeciesGroup:
    """The sites of one element: fitted coefficients, fractional coordinates, occupancies."""

    symbol: str
    z: int
    coeff: np.ndarray
    frac_coords: np.ndarray
    occupancies: np.ndarray


def species_groups(structure: Structure) -> list[SpeciesGroup]:
    """Group the sites by element (occupancy-weighted; partial occupancies count).

    Raises:
        StructureError: ``simulate`` / ``no_scattering_factors`` for an element without
            fitted coefficients (e.g. COD's dummy atom ``M``).
    """
    groups: dict[str, tuple[list[np.ndarray], list[float]]] = {}
    for site in structure:
        for sp, occu in site.species.items():
            symbol = getattr(sp, "symbol", str(sp))
            if not has_scattering_factors(symbol):
                raise StructureError(
                    "simulate",
                    "no_scattering_factors",
                    f"species {symbol!r} has no atomic scattering factors",
                )
            coords, occus = groups.setdefault(symbol, ([], []))
            coords.append(site.frac_coords)
            occus.append(float(occu))
    out = []
    for symbol, (coords, occus) in groups.items():
        z, coeff = scattering_coefficients(symbol)
        out.append(SpeciesGroup(symbol, z, coeff, np.array(coords), np.array(occus)))
    return out


def phase_sums(hkl: np.ndarray, species: list[SpeciesGroup]) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy-weighted phase sums per element, cached per structure.

    ``P_e(hkl) = sum_{j in e} occ_j exp(2 pi i hkl . r_j)``; fractional coordinates do not
    move under homogeneous strain, so these serve every strain.

    Args:
        hkl: integer reflections (M, 3).
        species: the element groups of :func:`species_groups`.

    Returns:
        Real and imaginary parts, each (E, M).
    """
    n_refl = len(hkl)
    re = np.empty((len(species), n_refl))
    im = np.empty((len(species), n_refl))
    hkl_f = hkl.astype(np.float64)
    for e, sp in enumerate(species):
        rows = max(1, PHASE_CHUNK_ENTRIES // len(sp.occupancies))
        for start in range(0, n_refl, rows):
            sl = slice(start, start + rows)
            arg = (2 * math.pi) * (hkl_f[sl] @ sp.frac_coords.T)
            re[e, sl] = np.cos(arg) @ sp.occupancies
            im[e, sl] = np.sin(arg) @ sp.occupancies
    return re, im


def squared_structure_factor(
    s2: np.ndarray,
    hidx: np.ndarray,
    phase: tuple[np.ndarray, np.ndarray],
    species: list[SpeciesGroup],
    dw: np.ndarray,
) -> np.ndarray:
    """|F|^2 at each (strain, reflection) point, from s^2 and the cached phase sums.

    All ``exp(-b_i s^2)`` of all elements are one (K, block) array and one ``exp`` call;
    a block-diagonal (E, K) matrix of the ``a_i`` sums them per element (BLAS), so the cost
    is K exponentials per point plus a few passes, whatever the number of sites.

    Args:
        s2: ``s^2 = (|g| / 2)^2`` per point, 1/angstrom^2, shape (N,).
        hidx: the reflection (column of the phase sums) of each point, shape (N,).
        phase: real and imaginary phase sums (E, M) from :func:`phase_sums`.
        species: the element groups, in the order of the phase sums.
        dw: Debye-Waller ``B`` per element (angstrom^2; 0 for none), shape (E,).

    Returns:
        ``|F|^2`` per point, electrons^2, shape (N,).
    """
    neg_b = -np.concatenate([sp.coeff[:, 1] for sp in species])
    n_coeff = len(neg_b)
    weights = np.zeros((len(species), n_coeff))
    col = 0
    for e, sp in enumerate(species):
        weights[e, col : col + len(sp.coeff)] = sp.coeff[:, 0]
        col += len(sp.coeff)
    z = np.array([float(sp.z) for sp in species])[:, None]
    use_dw = bool(np.any(dw))
    out = np.empty(len(s2))
    block = max(1024, FORM_FACTOR_BLOCK // n_coeff)
    re_phase, im_phase = phase
    for start in range(0, len(s2), block):
        sl = slice(start, start + block)
        s2b = s2[sl]
        terms = neg_b[:, None] * s2b  # (K, B); broadcasting is SIMD, ufunc.outer is not
        np.exp(terms, out=terms)
        f = weights @ terms  # (E, B): sum_i a_i exp(-b_i s^2)
        f *= s2b
        f *= -SCATTERING_PREFACTOR
        f += z
        if use_dw:
            f *= np.exp(-dw[:, None] * s2b)
        idx = hidx[sl]
        f_re = np.einsum("eb,eb->b", f, re_phase[:, idx])
        f_im = np.einsum("eb,eb->b", f, im_phase[:, idx])
        out[sl] = f_re * f_re + f_im * f_im
    return out
