r"""A refinable phase: its reflections and its symmetry-constrained lattice.

A phase's reflections come from :func:`xrdpipe.diffraction.simulate_peaks` on its unstrained
structure at a reference wavelength ``lambda_ref`` (the store's convention): per peak the
representative ``hkl``, ``d``, the multiplicity and ``intensity_raw = |F|^2 m LP`` with
pymatgen's unpolarised Lorentz-polarisation factor

    LP(2theta) = (1 + cos^2 2theta) / (sin^2 theta cos theta)

(``diffraction/peaks.py`` step 5). The refinement keeps ``|F|^2 m = intensity_raw / LP`` and,
when the lattice moves, recomputes ``d`` from ``hkl`` and the refined metric,
``1/d^2 = h^T G^-1 h`` with the direct metric

    G = [[a^2, a b cos(gamma), a c cos(beta)],
         [a b cos(gamma), b^2, b c cos(alpha)],
         [a c cos(beta), b c cos(alpha), c^2]],

and re-weights LP at the new ``2theta(lambda_ref, d)``. ``|F|^2`` changes with
``s = 1/(2d)`` through the atomic form factors (0.7 % of an intensity for a 0.3 % cell
change): it follows ``|F|^2(d) = |F|^2(d_0) (d / d_0)^kappa`` with ``kappa = dln|F|^2 /
dln d`` per peak, from two isotropically strained cells (``+-ISOTROPIC_STEP``; exact for
an isotropic change, second order otherwise).

The lattice is parametrised by crystal system (:class:`LatticeModel`): cubic ``a``;
tetragonal and hexagonal (trigonal in hexagonal axes) ``a, c``; rhombohedral axes ``a,
alpha``; orthorhombic ``a, b, c``; monoclinic ``a, b, c`` and the one free angle; triclinic
all six. Which cell edge is unique is read from the cell itself (the two equal edges of a
tetragonal cell, the edges around the 120 degree angle of a hexagonal one, the angle away
from 90 degrees of a monoclinic one), so any CIF setting works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from xrdpipe.diffraction import (
    point_group_rotations,
    simulate_peaks,
    wavelength_angstrom,
)
from xrdpipe.diffraction.quantitative import cell_mass
from xrdpipe.patterns.config import CU_KA_MEAN
from xrdpipe.patterns.physics import bragg_two_theta_deg
from xrdpipe.structures.symmetry import analyse_symmetry

LENGTH_TOL = 1e-4
"""Relative tolerance under which two cell edges count as equal (symmetry-tied)."""

ANGLE_TOL_DEG = 1e-3
"""Degrees: a cell angle this close to 90 or 120 is fixed by symmetry."""

RANGE_MARGIN_DEG = 3.0
"""Degrees added on each side of the scan when reflections are listed: peaks just outside
the scan put tails into it, and the refined lattice may move peaks in or out."""

ISOTROPIC_STEP = 0.002
"""Relative isotropic strain of the two cells that give ``kappa`` (module docstring)."""

LENGTH_NAMES = ("a", "b", "c")
ANGLE_NAMES = ("alpha", "beta", "gamma")


def lorentz_polarisation(two_theta: np.ndarray) -> np.ndarray:
    """Pymatgen's unpolarised LP factor ``(1 + cos^2 2theta) / (sin^2 theta cos theta)``."""
    theta = np.deg2rad(np.asarray(two_theta, dtype=np.float64)) / 2.0
    sin_t, cos_t = np.sin(theta), np.cos(theta)
    cos_2t = 1.0 - 2.0 * sin_t * sin_t
    return (1.0 + cos_2t * cos_2t) / (sin_t * sin_t * cos_t)


def cell_constants(lattice_matrix: np.ndarray) -> np.ndarray:
    """``(a, b, c, alpha, beta, gamma)`` of lattice rows, angstrom and degrees."""
    m = np.asarray(lattice_matrix, dtype=np.float64)
    lengths = np.linalg.norm(m, axis=1)
    pairs = ((1, 2), (0, 2), (0, 1))
    angles = [
        math.degrees(math.acos(float(np.clip(m[i] @ m[j] / (lengths[i] * lengths[j]), -1, 1))))
        for i, j in pairs
    ]
    return np.concatenate([lengths, angles])


def reciprocal_metric(constants: np.ndarray) -> np.ndarray:
    """``G^-1`` of the cell ``(a, b, c, alpha, beta, gamma)``: ``1/d^2 = h^T G^-1 h``."""
    a, b, c = constants[:3]
    ca, cb, cg = np.cos(np.deg2rad(constants[3:]))
    metric = np.array(
        [
            [a * a, a * b * cg, a * c * cb],
            [a * b * cg, b * b, b * c * ca],
            [a * c * cb, b * c * ca, c * c],
        ]
    )
    return np.linalg.inv(metric)


def cell_volume(constants: np.ndarray) -> float:
    """Cell volume ``sqrt(det G)``, angstrom^3."""
    a, b, c = constants[:3]
    ca, cb, cg = np.cos(np.deg2rad(constants[3:]))
    return float(a * b * c * math.sqrt(max(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg, 0)))


@dataclass(frozen=True)
class LatticeModel:
    """Free lattice parameters of a crystal system and the cell they make.

    Each free length scales a group of symmetry-equal edges; each free angle sets a group of
    symmetry-equal angles; the other angles stay at their (90 or 120 degree) values.

    Attributes:
        crystal_system: spglib's crystal system of the phase.
        names: the free parameters (``a``, ``c``, ``beta``, ...).
        start: their values in the given cell, angstrom or degrees.
        reference: the given cell ``(a, b, c, alpha, beta, gamma)``.
        groups: per free parameter, the indices (0-5) of the constants it sets.
    """

    crystal_system: str
    names: tuple[str, ...]
    start: np.ndarray
    reference: np.ndarray
    groups: tuple[tuple[int, ...], ...]

    def constants(self, values: np.ndarray) -> np.ndarray:
        """The cell ``(a, b, c, alpha, beta, gamma)`` of the free parameter values."""
        out = self.reference.copy()
        for value, start, group in zip(values, self.start, self.groups, strict=True):
            for index in group:
                out[index] = value if index >= 3 else self.reference[index] * value / start
        return out


def _equal(x: float, y: float) -> bool:
    return abs(x - y) <= LENGTH_TOL * max(abs(x), abs(y))


def _special(angle: float) -> bool:
    return min(abs(angle - 90.0), abs(angle - 120.0)) <= ANGLE_TOL_DEG * 100


def lattice_model(constants: np.ndarray, crystal_system: str) -> LatticeModel:
    """The symmetry-constrained parametrisation of a cell (see the module docstring).

    Args:
        constants: ``(a, b, c, alpha, beta, gamma)`` of the phase's cell.
        crystal_system: ``cubic``, ``tetragonal``, ``hexagonal``, ``trigonal``,
            ``orthorhombic``, ``monoclinic`` or ``triclinic``.

    Returns:
        The :class:`LatticeModel`.
    """
    lengths, angles = constants[:3], constants[3:]
    length_groups: list[tuple[int, ...]]
    angle_groups: list[tuple[int, ...]] = []
    if crystal_system == "cubic":
        length_groups = [(0, 1, 2)]
    elif crystal_system in ("tetragonal", "hexagonal", "trigonal"):
        rhombohedral = all(_equal(lengths[0], x) for x in lengths) and not any(
            _special(x) for x in angles
        )
        if rhombohedral:
            length_groups, angle_groups = [(0, 1, 2)], [(3, 4, 5)]
        else:
            if crystal_system == "tetragonal":
                pairs = [
                    (i, j) for i, j in ((0, 1), (0, 2), (1, 2)) if _equal(lengths[i], lengths[j])
                ]
                pair = pairs[0] if pairs else (0, 1)
            else:  # the two edges around the 120 degree angle (alpha: b-c, beta: a-c, gamma: a-b)
                k = int(np.argmin(np.abs(angles - 120.0)))
                pair = ((1, 2), (0, 2), (0, 1))[k]
            unique = ({0, 1, 2} - set(pair)).pop()
            length_groups = [pair, (unique,)]
    elif crystal_system == "orthorhombic":
        length_groups = [(0,), (1,), (2,)]
    elif crystal_system == "monoclinic":
        length_groups = [(0,), (1,), (2,)]
        angle_groups = [(3 + int(np.argmax(np.abs(angles - 90.0))),)]
    elif crystal_system == "triclinic":
        length_groups = [(0,), (1,), (2,)]
        angle_groups = [(3,), (4,), (5,)]
    else:
        raise ValueError(
            f"crystal_system {crystal_system!r} is not one of cubic, tetragonal, hexagonal, "
            "trigonal, orthorhombic, monoclinic, triclinic"
        )
    groups = tuple(length_groups) + tuple(angle_groups)
    names = tuple(LENGTH_NAMES[g[0]] if g[0] < 3 else ANGLE_NAMES[g[0] - 3] for g in groups)
    start = np.array([constants[g[0]] for g in groups], dtype=np.float64)
    return LatticeModel(crystal_system, names, start, np.asarray(constants, float).copy(), groups)


@dataclass(frozen=True)
class RefinementPhase:
    """What the refinement needs of one candidate phase.

    Attributes:
        name: the phase's label (a COD id, a mineral name).
        hkl: ``(P, 3)`` representative Miller indices of its peaks.
        structure_intensity: ``(P,)`` ``|F|^2 m`` (``intensity_raw / LP``), electrons^2.
        form_factor_slope: ``(P,)`` ``kappa = dln|F|^2 / dln d``.
        d_spacing: ``(P,)`` angstrom in the given cell.
        lattice: the constrained parametrisation.
        cell_mass: ``Z M`` of the cell, g/mol (Hill-Howard's ``Z M``).
        density: g/cm^3 of the given cell.
        composition: the cell's formula (for absorption).
        reference_wavelength: angstrom, the wavelength of ``intensity_raw``'s LP.
        rotations: ``(G, 3, 3)`` Cartesian point-group rotations (March-Dollase families).
        reciprocal_basis: ``(3, 3)`` reciprocal basis vectors as columns, 1/angstrom.
    """

    name: str
    hkl: np.ndarray
    structure_intensity: np.ndarray
    form_factor_slope: np.ndarray
    d_spacing: np.ndarray
    lattice: LatticeModel
    cell_mass: float
    density: float
    composition: str
    reference_wavelength: float
    rotations: np.ndarray = field(repr=False)
    reciprocal_basis: np.ndarray = field(repr=False)

    @property
    def volume(self) -> float:
        """The given cell's volume, angstrom^3."""
        return cell_volume(self.lattice.reference)

    def structure_intensities(self, d_spacing: np.ndarray) -> np.ndarray:
        """``|F|^2 m`` at the peaks' new ``d`` (module docstring)."""
        return self.structure_intensity * (d_spacing / self.d_spacing) ** self.form_factor_slope

    def d_spacings(self, lattice_values: np.ndarray) -> np.ndarray:
        """``d`` of every peak in the cell of the free parameters, angstrom."""
        g_inv = reciprocal_metric(self.lattice.constants(lattice_values))
        h = self.hkl.astype(np.float64)
        return 1.0 / np.sqrt(np.einsum("pi,ij,pj->p", h, g_inv, h))


def _form_factor_slope(table: object, hkl: np.ndarray) -> np.ndarray:
    """``kappa`` per peak of row 0 from rows 1 and 2 (cells ``1 -+ ISOTROPIC_STEP``)."""
    rows = []
    for row in (1, 2):
        real = table.mask[row]  # type: ignore[attr-defined]
        f2 = table.intensity_raw[row][real] / lorentz_polarisation(table.two_theta[row][real])  # type: ignore[attr-defined]
        rows.append({tuple(h): v for h, v in zip(table.hkl[row][real].tolist(), f2, strict=True)})  # type: ignore[attr-defined]
    step = math.log((1 + ISOTROPIC_STEP) / (1 - ISOTROPIC_STEP))
    slope = np.zeros(len(hkl))
    for i, h in enumerate(map(tuple, hkl.tolist())):
        low, high = rows[0].get(h), rows[1].get(h)
        if low and high and low > 0 and high > 0:
            slope[i] = math.log(high / low) / step
    return slope


def phase_from_structure(
    structure: Structure,
    name: str,
    two_theta_range: tuple[float, float],
    wavelength: str | float = CU_KA_MEAN,
    *,
    crystal_system: str | None = None,
    **simulate_options: object,
) -> RefinementPhase:
    """Lists a structure's reflections for a scan range and sets up its lattice model.

    Args:
        structure: the phase's crystal structure (unstrained).
        name: its label in results.
        two_theta_range: the scan's range, degrees (widened by :data:`RANGE_MARGIN_DEG`).
        wavelength: the reference wavelength of the intensities, angstrom or a pymatgen name
            (the K-alpha mean, as the store's peaks; the lines themselves are set per
            instrument in :class:`~xrdpipe.refinement.model.LineSettings`).
        crystal_system: skip spglib and use this one.
        **simulate_options: passed to :func:`~xrdpipe.diffraction.simulate_peaks`
            (``scattering``, ``displacement``, ``overall_b``); a phase set's refinement
            passes its store's (:func:`xrdpipe.stages.quantify_scans.refinement_options`).

    Returns:
        The :class:`RefinementPhase`.

    Raises:
        ValueError: the phase has no reflection in the widened range; or
            ``displacement="cif"`` on a structure without its sites' ``B``
            (``parse_structure`` keeps none: call
            :func:`xrdpipe.structures.displacement.attach_displacements` first).
    """
    lam = wavelength_angstrom(wavelength)
    lo, hi = two_theta_range
    widened = (max(lo - RANGE_MARGIN_DEG, 0.5), min(hi + RANGE_MARGIN_DEG, 179.0))
    strains = np.eye(3)[None] * np.array([0.0, -ISOTROPIC_STEP, ISOTROPIC_STEP])[:, None, None]
    table = simulate_peaks(structure, strains, lam, widened, **simulate_options)  # type: ignore[arg-type]
    real = table.mask[0]
    if not real.any():
        raise ValueError(
            f"phase {name!r} has no reflection in two_theta {widened[0]:.2f}-{widened[1]:.2f} "
            f"degrees at {lam} angstrom: it cannot be refined on this scan (drop it)"
        )
    two_theta = table.two_theta[0][real]
    hkl = table.hkl[0][real].astype(np.int64)
    structure_intensity = table.intensity_raw[0][real] / lorentz_polarisation(two_theta)
    system = crystal_system or analyse_symmetry(structure).crystal_system
    constants = cell_constants(structure.lattice.matrix)
    composition = structure.composition
    return RefinementPhase(
        name=name,
        hkl=hkl,
        structure_intensity=structure_intensity,
        form_factor_slope=_form_factor_slope(table, hkl),
        d_spacing=table.d_spacing[0][real],
        lattice=lattice_model(constants, system),
        cell_mass=float(cell_mass(float(structure.density), float(structure.volume))),
        density=float(structure.density),
        composition=composition.formula,
        reference_wavelength=lam,
        rotations=point_group_rotations(structure),
        reciprocal_basis=np.linalg.inv(np.asarray(structure.lattice.matrix, dtype=np.float64)),
    )


def reference_two_theta(phase: RefinementPhase, d_spacing: np.ndarray) -> np.ndarray:
    """Bragg angles at the phase's reference wavelength (where LP is evaluated), degrees."""
    return bragg_two_theta_deg(d_spacing, phase.reference_wavelength)
