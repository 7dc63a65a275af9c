"""Atomic scattering factors and structure factors: pymatgen's fit or Waasmaier-Kirfel's.

pymatgen's ``XRDCalculator`` uses, for each element, four fitted pairs ``(a_i, b_i)`` and

    f(s) = Z - 41.78214 * s^2 * sum_i a_i exp(-b_i s^2),   s = sin(theta) / lambda (1/angstrom)

We read the very same ``atomic_scattering_params.json`` that pymatgen ships (once per
process), so the simulator and pymatgen cannot drift apart on the coefficients. The
structure factor is split into what a strain cannot change, the per-group phase sums
(:func:`phase_sums`, cached per structure), and what it does, the form factors at each
strained ``s`` (:func:`squared_structure_factor`).

That fit is off for some heavy elements against the tabulated Hartree-Fock/Dirac-Fock
values (International Tables C, 6.1.1.1): La +1.22 e at ``s = 0.1`` (+2.3 %), Ce +1.1 e,
Y -0.9 e and W -1.7 e at ``s = 0.5`` (``docs/simulation.md`` lists 27 elements). The
Waasmaier-Kirfel fit (Acta Cryst. A51, 416 (1995)) of those tables,

    f0(s) = sum_{i=1}^{5} a_i exp(-b_i s^2) + c,

read from ``xraydb``'s ``Waasmaier`` table (neutral atoms, Z = 1-98), agrees with them to
~0.03 e; :data:`FORM_FACTOR_TABLES` names the two fits.

:data:`SCATTERING_MODES` (the defaults reproduce pymatgen exactly):

- ``pymatgen``: pymatgen's real ``f0``;
- ``anomalous``: ``f = f0(s) + f'(E) + i f''(E)``, ``f0`` pymatgen's, with ``f'`` and ``f''``
  from the Chantler tables (``xraydb.f1_chantler``, ``f2_chantler``; ``f1_chantler`` returns
  ``f'`` itself, not ``Z + f'``: -3.04 e for Ni at 8047.8 eV), see :func:`anomalous_factors`;
- ``tables``: the same with the Waasmaier-Kirfel ``f0`` (the lab phase-set default).

**Per-site displacement** (any mode): sites are grouped by (element, ``B``), each group with
its own Debye-Waller factor ``exp(-B s^2)`` (:func:`species_groups` with ``site_b``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.periodic_table import Element

from xrdpipe.errors import StructureError

SITE_B_PROPERTY = "b_iso"
"""Site property holding each site's isotropic ``B`` (angstrom^2; NaN where the CIF gives
none), set by :func:`xrdpipe.structures.displacement.attach_displacements`."""

SCATTERING_MODES = ("pymatgen", "anomalous", "tables")
DISPLACEMENT_MODES = ("overall", "cif")

FORM_FACTOR_TABLES = ("pymatgen", "waasmaier-kirfel")
"""The fits of ``f0``: pymatgen's (``Z - 41.78214 s^2 sum a_i exp(-b_i s^2)``) and
Waasmaier-Kirfel's (``sum a_i exp(-b_i s^2) + c``)."""

MODE_FORM_FACTORS = {
    "pymatgen": ("pymatgen", False),
    "anomalous": ("pymatgen", True),
    "tables": ("waasmaier-kirfel", True),
}
"""Per scattering mode: the ``f0`` fit and whether ``f' + i f''`` is added."""

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


@cache
def waasmaier_kirfel_params() -> dict[str, tuple[float, np.ndarray]]:
    """Waasmaier-Kirfel's coefficients of every neutral atom (Z = 1-98), from ``xraydb``.

    Returns:
        ``{symbol: (c, coeff)}`` with ``coeff`` (5, 2) of columns ``a_i`` (electrons) and
        ``b_i`` (angstrom^2), ``f0(s) = sum a_i exp(-b_i s^2) + c``; read-only, loaded once.
    """
    import xraydb  # noqa: PLC0415 - a database load, only for the tables mode

    params: dict[str, tuple[float, np.ndarray]] = {}
    for row in xraydb.get_xraydb().get_cache("Waasmaier"):
        if row.ion != row.element:  # ions (Fe2+, O1-): neutral atoms only
            continue
        coeff = np.column_stack([json.loads(row.scale), json.loads(row.exponents)])
        coeff.setflags(write=False)
        params[row.ion] = (float(row.offset), coeff)
    return params


@dataclass(frozen=True)
class FormFactorFit:
    """``f0(s)`` of one neutral atom, as one of :data:`FORM_FACTOR_TABLES` writes it.

    Attributes:
        symbol: the element.
        table: ``pymatgen`` (``f0 = constant - 41.78214 s^2 sum a_i exp(-b_i s^2)``,
            ``constant = Z``) or ``waasmaier-kirfel`` (``f0 = constant + sum a_i
            exp(-b_i s^2)``).
        constant: ``Z`` or ``c``, electrons.
        coeff: ``(n, 2)``: ``a_i`` and ``b_i`` (angstrom^2).
    """

    symbol: str
    table: str
    constant: float
    coeff: np.ndarray

    def __call__(self, s: np.ndarray | float) -> np.ndarray:
        """``f0`` at ``s = sin(theta) / lambda`` (1/angstrom), electrons."""
        s2 = np.square(np.asarray(s, dtype=np.float64))[..., None]
        gauss = np.exp(-self.coeff[:, 1] * s2) @ self.coeff[:, 0]
        if self.table == "pymatgen":
            return self.constant - SCATTERING_PREFACTOR * s2[..., 0] * gauss
        return self.constant + gauss


@cache
def form_factor_fit(element_symbol: str, table: str = "pymatgen") -> FormFactorFit:
    """The ``f0`` fit of a neutral atom (``D`` and ``T`` count as ``H`` for Waasmaier-Kirfel).

    Args:
        element_symbol: an element symbol (``"Fe"``, not ``"Fe2+"``).
        table: one of :data:`FORM_FACTOR_TABLES`.

    Returns:
        The :class:`FormFactorFit` (call it with ``s`` for ``f0``).

    Raises:
        ValueError: an unknown table.
        KeyError: the element is not in the table.
    """
    if table == "pymatgen":
        z, coeff = scattering_coefficients(element_symbol)
        return FormFactorFit(element_symbol, table, float(z), coeff)
    if table != "waasmaier-kirfel":
        raise ValueError(f"form factor table {table!r} is not one of {list(FORM_FACTOR_TABLES)}")
    params = waasmaier_kirfel_params()
    symbol = "H" if element_symbol in ("D", "T") else element_symbol
    if symbol not in params:
        raise KeyError(
            f"element {element_symbol!r} has no Waasmaier-Kirfel form factor; allowed: the "
            f"{len(params)} neutral atoms H to Cf of xraydb's Waasmaier table"
        )
    c, coeff = params[symbol]
    return FormFactorFit(element_symbol, table, c, coeff)


HC_EV_ANGSTROM = 12398.419843320026
"""h c in eV angstrom (CODATA 2018): photon energy E = hc / lambda."""


def photon_energy_ev(wavelength: float) -> float:
    """The photon energy in eV of a wavelength in angstrom."""
    if not wavelength > 0:
        raise ValueError(f"wavelength={wavelength!r} must be a positive float (angstrom)")
    return HC_EV_ANGSTROM / wavelength


@cache
def anomalous_factors(element_symbol: str, energy_ev: float) -> tuple[float, float]:
    """The anomalous scattering factors ``(f', f'')`` of an element, electrons (Chantler).

    ``xraydb.f1_chantler`` returns ``f'`` (not ``Z + f'``): at 8047.8 eV (Cu Ka1) Ni gives
    -3.04 and Bi -4.26 (``f''``: 0.505 and 8.83). A table that returned ``Z + f'`` would
    give about ``Z``; that is refused, so a change of convention cannot pass silently.

    Args:
        element_symbol: an element symbol (``D`` and ``T`` count as ``H``).
        energy_ev: the photon energy, eV.

    Returns:
        ``(f', f'')``.

    Raises:
        StructureError: ``simulate`` / ``no_scattering_factors`` for an element outside the
            Chantler tables (Z > 92).
    """
    import xraydb  # noqa: PLC0415 - a database load, only for the anomalous mode

    symbol = "H" if element_symbol in ("D", "T") else element_symbol
    z = int(Element(symbol).Z)
    if z > 92:
        raise StructureError(
            "simulate",
            "no_scattering_factors",
            f"element {element_symbol!r} (Z={z}) has no anomalous factors; Chantler's "
            "tables cover Z = 1 to 92",
        )
    f1 = float(xraydb.f1_chantler(symbol, energy_ev))
    f2 = float(xraydb.f2_chantler(symbol, energy_ev))
    if f1 > 0.5 * z:
        raise RuntimeError(f"xraydb.f1_chantler({symbol!r}) = {f1:.3f}: expected f', not Z + f'")
    return f1, f2


FORM_FACTOR_BLOCK = 1 << 17
"""(coefficient x point) entries per block of exponentials (1 MB: stays in cache)."""

PHASE_CHUNK_ENTRIES = 1 << 21
"""(reflection x site) entries per block of the once-per-structure phase sums (32 MB)."""


@dataclass(frozen=True)
class SpeciesGroup:
    """The sites of one element and one ``B``: ``f0`` fit, coordinates, occupancies.

    ``b_iso`` is the group's isotropic displacement parameter ``B`` (angstrom^2; 0 for the
    pymatgen-exact mode, where each element is one group).
    """

    symbol: str
    z: int
    form_factor: FormFactorFit
    frac_coords: np.ndarray
    occupancies: np.ndarray
    b_iso: float = 0.0


def species_groups(
    structure: Structure, site_b: np.ndarray | None = None, table: str = "pymatgen"
) -> list[SpeciesGroup]:
    """Group the sites by element and ``B`` (occupancy-weighted; partial occupancies count).

    Args:
        structure: the crystal.
        site_b: ``B`` per site (angstrom^2, finite, >= 0), or None: one group per element,
            in order of first appearance (pymatgen's grouping).
        table: the ``f0`` fit, one of :data:`FORM_FACTOR_TABLES`.

    Raises:
        StructureError: ``simulate`` / ``no_scattering_factors`` for an element without
            fitted coefficients (e.g. COD's dummy atom ``M``).
    """
    if site_b is not None:
        site_b = np.asarray(site_b, dtype=np.float64)
        if site_b.shape != (len(structure),) or not np.all(np.isfinite(site_b) & (site_b >= 0)):
            raise ValueError(
                f"site_b must be {len(structure)} finite values >= 0 (angstrom^2), got {site_b}"
            )
    groups: dict[tuple[str, float], tuple[list[np.ndarray], list[float]]] = {}
    for i, site in enumerate(structure):
        b = 0.0 if site_b is None else float(site_b[i])
        for sp, occu in site.species.items():
            symbol = getattr(sp, "symbol", str(sp))
            if not has_scattering_factors(symbol):
                raise StructureError(
                    "simulate",
                    "no_scattering_factors",
                    f"species {symbol!r} has no atomic scattering factors",
                )
            coords, occus = groups.setdefault((symbol, b), ([], []))
            coords.append(site.frac_coords)
            occus.append(float(occu))
    out = []
    for (symbol, b), (coords, occus) in groups.items():
        z = int(Element(symbol).Z)
        fit = form_factor_fit(symbol, table)
        out.append(SpeciesGroup(symbol, z, fit, np.array(coords), np.array(occus), b))
    return out


def phase_sums(hkl: np.ndarray, species: list[SpeciesGroup]) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy-weighted phase sums per group, cached per structure.

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
    anomalous: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """|F|^2 at each (strain, reflection) point, from s^2 and the cached phase sums.

    All ``exp(-b_i s^2)`` of all elements are one (K, block) array and one ``exp`` call;
    a block-diagonal (E, K) matrix of the ``a_i`` sums them per element (BLAS), so the cost
    is K exponentials per point plus a few passes, whatever the number of sites. Groups of
    one element with different ``B`` share its ``f0``. The groups' :class:`FormFactorFit`
    (all of one table) give ``f0``: pymatgen's in its own order of operations (bit for bit
    pymatgen's), Waasmaier-Kirfel's as ``sum a_i exp(-b_i s^2) + c``.

    With complex form factors ``f_g = (f0 + f') D_g + i f'' D_g`` (``D_g = exp(-B_g s^2)``)
    Friedel's law fails for non-centrosymmetric crystals, and a powder ring holds both
    ``h`` and ``-h``. With ``a = sum Re f P_re``, ``b = sum Im f P_im``,
    ``c = sum Re f P_im``, ``d = sum Im f P_re``: ``F(h) = (a - b) + i (c + d)``,
    ``F(-h) = (a + b) + i (d - c)``, so ``(|F(h)|^2 + |F(-h)|^2) / 2 = a^2 + b^2 + c^2 + d^2``
    (the caller's factor 2 counts the Friedel half, as for real ``f``).

    Args:
        s2: ``s^2 = (|g| / 2)^2`` per point, 1/angstrom^2, shape (N,).
        hidx: the reflection (column of the phase sums) of each point, shape (N,).
        phase: real and imaginary phase sums (G, M) from :func:`phase_sums`.
        species: the groups, in the order of the phase sums.
        dw: Debye-Waller ``B`` per group (angstrom^2; 0 for none), shape (G,).
        anomalous: ``(f', f'')`` per group, each (G,), or None for real ``f = f0``.

    Returns:
        ``|F|^2`` per point (the Friedel-pair mean with ``anomalous``), electrons^2, (N,).
    """
    symbols = list(dict.fromkeys(sp.symbol for sp in species))
    fits = {sp.symbol: sp.form_factor for sp in reversed(species)}
    tables = {fit.table for fit in fits.values()}
    if len(tables) != 1:
        raise ValueError(f"the groups' form factors mix the tables {sorted(tables)}; use one")
    pymatgen_fit = tables == {"pymatgen"}
    element_of = np.array([symbols.index(sp.symbol) for sp in species])
    gather = len(symbols) != len(species)
    neg_b = -np.concatenate([fits[sym].coeff[:, 1] for sym in symbols])
    n_coeff = len(neg_b)
    weights = np.zeros((len(symbols), n_coeff))
    col = 0
    for e, sym in enumerate(symbols):
        coeff = fits[sym].coeff
        weights[e, col : col + len(coeff)] = coeff[:, 0]
        col += len(coeff)
    z = np.array([fits[sym].constant for sym in symbols])[:, None]  # Z or c
    use_dw = bool(np.any(dw))
    if anomalous is not None:
        f_prime = np.asarray(anomalous[0], dtype=np.float64)[:, None]
        f_second = np.asarray(anomalous[1], dtype=np.float64)[:, None]
    out = np.empty(len(s2))
    block = max(1024, FORM_FACTOR_BLOCK // n_coeff)
    re_phase, im_phase = phase
    for start in range(0, len(s2), block):
        sl = slice(start, start + block)
        s2b = s2[sl]
        terms = neg_b[:, None] * s2b  # (K, B); broadcasting is SIMD, ufunc.outer is not
        np.exp(terms, out=terms)
        f = weights @ terms  # (E, B): sum_i a_i exp(-b_i s^2)
        if pymatgen_fit:
            f *= s2b
            f *= -SCATTERING_PREFACTOR
        f += z
        if gather:
            f = f[element_of]  # (G, B)
        if anomalous is not None:
            f += f_prime
        if use_dw:
            debye_waller = np.exp(-dw[:, None] * s2b)
            f *= debye_waller
        idx = hidx[sl]
        re_p, im_p = re_phase[:, idx], im_phase[:, idx]
        f_re = np.einsum("eb,eb->b", f, re_p)
        f_im = np.einsum("eb,eb->b", f, im_p)
        out[sl] = f_re * f_re + f_im * f_im
        if anomalous is not None:
            f_imag = f_second * debye_waller if use_dw else np.broadcast_to(f_second, f.shape)
            b = np.einsum("eb,eb->b", f_imag, im_p)
            d = np.einsum("eb,eb->b", f_imag, re_p)
            out[sl] += b * b + d * d
    return out


@dataclass(frozen=True)
class ScatteringModel:
    """Everything the structure factor needs besides the reflections.

    Attributes:
        species: the site groups (element, ``B``).
        dw: Debye-Waller ``B`` per group, angstrom^2.
        anomalous: ``(f', f'')`` per group, or None (real ``f0``).
    """

    species: list[SpeciesGroup]
    dw: np.ndarray
    anomalous: tuple[np.ndarray, np.ndarray] | None


def site_displacements(structure: Structure, displacement: str, overall_b: float) -> np.ndarray:
    """``B`` per site: the CIF's (``cif``, where given) or ``overall_b``.

    Args:
        structure: the crystal; with ``cif``, its :data:`SITE_B_PROPERTY` site property
            is used where finite (NaN: not given in the CIF, ``overall_b`` there).
        displacement: ``overall`` or ``cif``.
        overall_b: angstrom^2, >= 0.

    Returns:
        ``(n_sites,)`` float64.

    Raises:
        ValueError: ``cif`` on a structure without the site property: pymatgen's CIF parser
            (``parse_structure``) keeps no displacement parameters, so they must have been
            attached (:func:`xrdpipe.structures.displacement.attach_displacements`); a
            structure without them would silently get ``overall_b`` on every site.
    """
    if displacement not in DISPLACEMENT_MODES:
        raise ValueError(f"displacement {displacement!r} is not one of {list(DISPLACEMENT_MODES)}")
    if not (math.isfinite(overall_b) and overall_b >= 0):
        raise ValueError(f"overall_b={overall_b!r} must be a finite B >= 0 (angstrom^2)")
    site_b = np.full(len(structure), float(overall_b))
    if displacement == "cif":
        if SITE_B_PROPERTY not in structure.site_properties:
            raise ValueError(
                f"displacement='cif' needs the sites' {SITE_B_PROPERTY!r} property, which "
                f"this {structure.composition.reduced_formula} structure lacks (pymatgen's "
                "CIF parser drops B/U): attach them first with xrdpipe.structures."
                "displacement.attach_displacements(structure, cif_text), or use "
                "displacement='overall'"
            )
        given = np.array(structure.site_properties[SITE_B_PROPERTY], dtype=np.float64)
        site_b = np.where(np.isfinite(given), given, site_b)
    return site_b


def scattering_model(
    structure: Structure,
    wavelength: float,
    debye_waller_factors: Mapping[str, float] | None = None,
    scattering: str = "pymatgen",
    displacement: str = "overall",
    overall_b: float = 0.0,
) -> ScatteringModel:
    """The groups, ``B`` and anomalous factors of a structure at a wavelength.

    With the defaults (``pymatgen``, ``overall``, 0) the groups are pymatgen's (one per
    element) and ``f`` is real, so the result is pymatgen's to ~1e-13.

    Args:
        structure: the crystal.
        wavelength: angstrom (the photon energy for ``f'``, ``f''`` is ``hc / wavelength``).
        debye_waller_factors: ``{element: B}`` (pymatgen's), multiplied onto the sites'.
        scattering: ``pymatgen`` (pymatgen's ``f0`` only), ``anomalous`` (pymatgen's
            ``f0 + f' + i f''``) or ``tables`` (Waasmaier-Kirfel's ``f0 + f' + i f''``).
        displacement: ``overall`` (every site ``overall_b``) or ``cif`` (each site's
            :data:`SITE_B_PROPERTY` where finite, else ``overall_b``).
        overall_b: angstrom^2.

    Returns:
        The :class:`ScatteringModel`.
    """
    if scattering not in SCATTERING_MODES:
        raise ValueError(f"scattering {scattering!r} is not one of {list(SCATTERING_MODES)}")
    table, with_anomalous = MODE_FORM_FACTORS[scattering]
    site_b = site_displacements(structure, displacement, overall_b)
    species = species_groups(structure, site_b if np.any(site_b) else None, table)
    dw_map = dict(debye_waller_factors or {})
    dw = np.array([float(dw_map.get(sp.symbol, 0.0)) + sp.b_iso for sp in species])
    anomalous = None
    if with_anomalous:
        energy = photon_energy_ev(wavelength)
        pairs = np.array([anomalous_factors(sp.symbol, energy) for sp in species])
        anomalous = (pairs[:, 0], pairs[:, 1])
    return ScatteringModel(species, dw, anomalous)
