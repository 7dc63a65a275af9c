r"""Atomic displacement parameters from CIF text, carried on pymatgen sites as ``B``.

pymatgen's ``CifParser`` drops displacement parameters (no site property holds them), so
they are read here from the same CIF text and attached to the parsed structure as the site
property :data:`xrdpipe.diffraction.SITE_B_PROPERTY` (``b_iso``, angstrom^2, NaN where the
CIF gives none), which ``Structure.as_dict`` keeps (the manifest's ``structure_json``).

Per ``_atom_site_label``, in order of preference:

1. ``_atom_site_B_iso_or_equiv``, or ``_atom_site_U_iso_or_equiv`` with ``B = 8 pi^2 U``;
2. else the anisotropic ``_atom_site_aniso_U_ij`` (or ``_B_ij``) of the label, reduced to
   the equivalent isotropic value (Fischer & Tillmanns 1988)

       U_eq = 1/3 \sum_i \sum_j U^{ij} a*_i a*_j (a_i . a_j)

   with the direct cell vectors ``a_i`` of the block's cell and the reciprocal lengths
   ``a*_i``; for an orthogonal cell ``U_eq = (U11 + U22 + U33) / 3``.

Values outside ``PLAUSIBLE_B`` count as not given: old COD files label the dimensionless
``beta_ij`` as ``_atom_site_aniso_B_ij`` (9009872: "B_11" = 0.0030, i.e. ``B_eq`` 0.005
angstrom^2 instead of ~1), and a negative ``B`` is unphysical.

A pymatgen site keeps the label of one of the CIF rows that were merged into it (a mixed
site such as ``Ti1``/``Nb1``/``Mg1`` at one position): its ``B`` is the occupancy-weighted
mean of the ``B`` of every row written at that row's coordinates.
"""

from __future__ import annotations

import math

import numpy as np
from pymatgen.core import Lattice, Structure

from xrdpipe.diffraction import SITE_B_PROPERTY
from xrdpipe.structures.parse import _ATOM_COORD_TAGS, _Block, _blocks, _Loop, _number

B_PER_U = 8 * math.pi**2
"""``B = 8 pi^2 U``: angstrom^2 per angstrom^2."""

PLAUSIBLE_B = (0.05, 30.0)
"""angstrom^2: ``B`` outside this range is taken as a mislabelled or broken value (NaN)."""

SAME_POSITION = 1e-4
"""Fractional distance under which two CIF rows are one (mixed) site."""

_ISO = (("_atom_site_b_iso_or_equiv", 1.0), ("_atom_site_u_iso_or_equiv", B_PER_U))
_ANISO = (("_atom_site_aniso_b_", 1.0), ("_atom_site_aniso_u_", B_PER_U))
_CELL = ("_cell_length_a", "_cell_length_b", "_cell_length_c")
_ANGLES = ("_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")


def _value(text: str) -> float:
    """A CIF number, NaN for ``?``, ``.`` or anything unreadable."""
    try:
        return _number(text)
    except ValueError:
        return math.nan


def equivalent_isotropic(u_ij: np.ndarray, lattice: Lattice) -> float:
    """``U_eq = 1/3 sum_ij U^ij a*_i a*_j (a_i . a_j)`` of a symmetric (3, 3) ``U^ij``.

    Args:
        u_ij: the CIF's ``U^ij`` (or ``B^ij``), angstrom^2, symmetric (3, 3).
        lattice: the cell the tensor refers to.

    Returns:
        ``U_eq`` (or ``B_eq``), in the units of ``u_ij``.
    """
    a_star = np.asarray(lattice.reciprocal_lattice_crystallographic.abc)
    metric = lattice.matrix @ lattice.matrix.T  # a_i . a_j
    return float(np.einsum("ij,i,j,ij->", u_ij, a_star, a_star, metric) / 3)


def _cell(block: _Block) -> Lattice | None:
    try:
        abc = [_number(block.items[t]) for t in _CELL]
        angles = [_number(block.items[t]) for t in _ANGLES]
    except (KeyError, ValueError):
        return None
    return Lattice.from_parameters(*abc, *angles)


def _anisotropic(block: _Block) -> dict[str, float]:
    """``B_eq`` per label from the aniso loops (empty without a cell or a loop)."""
    lattice = _cell(block)
    out: dict[str, float] = {}
    if lattice is None:
        return out
    for prefix, to_b in _ANISO:
        found = block.loop_with((prefix + "11",))
        if found is None:
            continue
        loop: _Loop = found[0]
        tags = ["_atom_site_aniso_label"] + [prefix + ij for ij in ("11", "22", "33")]
        tags += [prefix + ij for ij in ("12", "13", "23")]
        if any(t not in loop.tags for t in tags):
            continue
        labels, *cols = (loop.column(t) for t in tags)
        for i, label in enumerate(labels):
            u11, u22, u33, u12, u13, u23 = (_value(c[i]) for c in cols)
            u = np.array([[u11, u12, u13], [u12, u22, u23], [u13, u23, u33]])
            if np.all(np.isfinite(u)):
                out[label] = to_b * equivalent_isotropic(u, lattice)
    return out


def read_displacements(cif_text: str) -> dict[str, float]:
    """``B`` (angstrom^2) per ``_atom_site_label`` of the first block with atom sites.

    Mixed sites (rows at the same coordinates) get their occupancy-weighted mean ``B``
    under every label of the group; labels without any value are left out.

    Args:
        cif_text: the whole CIF file.

    Returns:
        ``{label: B}``; empty when the CIF gives no displacement parameters.
    """
    for block in _blocks(cif_text):
        found = block.loop_with(_ATOM_COORD_TAGS)
        if found is None:
            continue
        loop, x_tag = found
        if "_atom_site_label" not in loop.tags:
            return {}
        labels = loop.column("_atom_site_label")
        b = np.full(len(labels), math.nan)
        aniso = _anisotropic(block)
        for i, label in enumerate(labels):
            b[i] = aniso.get(label, math.nan)
        for tag, to_b in reversed(_ISO):  # B wins over U where a row has both
            if tag in loop.tags:
                iso = np.array([_value(v) for v in loop.column(tag)]) * to_b
                b = np.where(np.isfinite(iso), iso, b)
        b[(b < PLAUSIBLE_B[0]) | (b > PLAUSIBLE_B[1])] = math.nan
        occ = np.ones(len(labels))
        if "_atom_site_occupancy" in loop.tags:
            occ = np.array([_value(v) for v in loop.column("_atom_site_occupancy")])
            occ = np.where(np.isfinite(occ), occ, 1.0)
        xyz = np.array([[_value(v) for v in loop.column(x_tag[:-1] + axis)] for axis in "xyz"]).T
        return _mixed_site_means(labels, b, occ, xyz)
    return {}


def _mixed_site_means(
    labels: list[str], b: np.ndarray, occ: np.ndarray, xyz: np.ndarray
) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, label in enumerate(labels):
        diff = xyz - xyz[i]
        diff -= np.round(diff)
        same = np.all(np.abs(diff) < SAME_POSITION, axis=1) & np.isfinite(b)
        if same.any() and np.isfinite(b[i]):
            out[label] = float(np.average(b[same], weights=occ[same]))
    return out


def attach_displacements(structure: Structure, cif_text: str) -> Structure:
    """A copy of ``structure`` with each site's ``B`` as the site property ``b_iso``.

    Sites are matched to CIF rows by pymatgen's ``site.label`` (``_atom_site_label``);
    sites whose label has no value get NaN, which the simulator replaces by the phase's
    overall ``B`` (``simulate_peaks(..., displacement="cif", overall_b=...)``).

    Args:
        structure: the structure pymatgen parsed from ``cif_text``.
        cif_text: the CIF text.

    Returns:
        The copy (the input is not modified).
    """
    table = read_displacements(cif_text)
    values = [table.get(getattr(site, "label", None) or "", math.nan) for site in structure]
    out = structure.copy()
    out.add_site_property(SITE_B_PROPERTY, values)
    return out
