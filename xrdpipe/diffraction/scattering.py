"""Atomic X-ray scattering factors: pymatgen's fitted coefficients, loaded once.

pymatgen's ``XRDCalculator`` uses, for each element, four fitted pairs ``(a_i, b_i)`` and

    f(s) = Z - 41.78214 * s^2 * sum_i a_i exp(-b_i s^2),   s = sin(theta) / lambda (1/angstrom)

We read the very same ``atomic_scattering_params.json`` that pymatgen ships, so the
simulator and pymatgen cannot drift apart on the coefficients.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import numpy as np
from pymatgen.core.periodic_table import Element

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


def form_factor(z: int, coeff: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Atomic scattering factor f(s) for an array of s^2 values (pymatgen's formula).

    Args:
        z: atomic number.
        coeff: fitted coefficients, shape ``(n_coeff, 2)``.
        s2: ``s^2 = (sin(theta) / lambda)^2`` in 1/angstrom^2, any shape.

    Returns:
        f(s), same shape as ``s2`` (electrons).
    """
    acc = np.zeros_like(s2)
    tmp = np.empty_like(s2)
    for a_i, b_i in coeff:
        np.multiply(s2, -b_i, out=tmp)
        np.exp(tmp, out=tmp)
        tmp *= a_i
        acc += tmp
    acc *= s2
    acc *= -SCATTERING_PREFACTOR
    acc += z
    return acc
