"""Symmetry labels (space group, crystal system, lattice system) and dimensionality.

Labels come from spglib through pymatgen's ``SpacegroupAnalyzer`` with the tolerances
of ``reference.csv`` (symprec 0.1 angstrom, 5 degrees). The lattice system is paper 000's
seven classes: the trigonal crystal system is split by its lattice, rhombohedral (R) or
hexagonal (P).

Dimensionality follows Larsen et al., Phys. Rev. Materials 3, 034003 (2019): bonds from
covalent radii (:func:`bonds`, Larsen's own criterion, far faster than ``CrystalNN``) and
the rank of each bonded component's self-translations (:func:`larsen_dimensionality`,
equal to ``pymatgen.analysis.dimensionality.get_dimensionality_larsen`` on the same graph
and about 100x faster on molecular crystals, where pymatgen's search is per component).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.graphs import StructureGraph
from pymatgen.analysis.local_env import CovalentRadius
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from xrdpipe.config import CRYSTAL_SYSTEMS, LATTICE_SYSTEMS
from xrdpipe.errors import StructureError

SYMPREC = 0.1
"""spglib distance tolerance (angstrom): COD positions carry refinement noise."""

ANGLE_TOLERANCE = 5.0
"""spglib angle tolerance (degrees)."""

BOND_SCALE = 1.25
"""Two atoms are bonded when their distance is at most this times the sum of their
covalent radii (Cordero et al. 2008). Larsen et al. score k in [1, 1.5]; 1.25 keeps the
long ionic contacts of oxides and halides (Na-Cl is 1.05 x the covalent sum) and stops
before second neighbours."""

MAX_DIMENSIONALITY_SITES = 1000
"""Structures with more sites than this get no dimensionality (the graph grows as N x Z)."""


@dataclass(frozen=True)
class SymmetryInfo:
    """The symmetry labels of one structure.

    Attributes:
        space_group_number: International Tables number, 1-230.
        space_group_symbol: Hermann-Mauguin symbol as spglib writes it (e.g. ``P2_1/c``).
        crystal_system: one of :data:`xrdpipe.config.CRYSTAL_SYSTEMS`.
        lattice_system: one of :data:`xrdpipe.config.LATTICE_SYSTEMS` (paper 000's classes).
    """

    space_group_number: int
    space_group_symbol: str
    crystal_system: str
    lattice_system: str


def lattice_system_of(crystal_system: str, space_group_symbol: str) -> str:
    """Paper 000's lattice system: trigonal groups split into rhombohedral and hexagonal.

    Args:
        crystal_system: one of :data:`xrdpipe.config.CRYSTAL_SYSTEMS`.
        space_group_symbol: Hermann-Mauguin symbol; its first letter is the lattice.

    Returns:
        One of :data:`xrdpipe.config.LATTICE_SYSTEMS`.
    """
    if crystal_system not in CRYSTAL_SYSTEMS:
        raise ValueError(f"crystal_system {crystal_system!r} is not one of {CRYSTAL_SYSTEMS}")
    if crystal_system == "trigonal":
        return "rhombohedral" if space_group_symbol.startswith("R") else "hexagonal"
    return crystal_system


def analyse_symmetry(
    structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> SymmetryInfo:
    """Space group, crystal system and lattice system of a structure (spglib via pymatgen).

    Args:
        structure: the structure (disordered sites are typed by their composition).
        symprec: distance tolerance, angstrom.
        angle_tolerance: angle tolerance, degrees.

    Returns:
        The labels.

    Raises:
        StructureError: stage ``symmetry``, reason ``spglib_failed``, when spglib finds no
            space group at these tolerances.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analyzer = SpacegroupAnalyzer(
                structure, symprec=symprec, angle_tolerance=angle_tolerance
            )
            number = int(analyzer.get_space_group_number())
            symbol = str(analyzer.get_space_group_symbol())
            crystal_system = str(analyzer.get_crystal_system())
    except Exception as exc:  # noqa: BLE001 - spglib signals failure by several exceptions
        raise StructureError(
            "symmetry",
            "spglib_failed",
            f"symprec={symprec}, angle_tolerance={angle_tolerance}: {type(exc).__name__}: {exc}",
        ) from exc
    lattice_system = lattice_system_of(crystal_system, symbol)
    assert lattice_system in LATTICE_SYSTEMS, f"{lattice_system=} is not a lattice system"
    return SymmetryInfo(number, symbol, crystal_system, lattice_system)


def wyckoff_letters(
    structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> str:
    """The Wyckoff letters of a structure's orbits, as spglib assigns them: ``"a,b"``.

    One letter per set of symmetry-equivalent atoms, sorted, in the standard setting of
    spglib's space group (the same tolerances as :func:`analyse_symmetry`). With the
    space-group number it is the structure's prototype: rock salt is ``225`` and ``"a,b"``.

    Args:
        structure: the structure.
        symprec: distance tolerance, angstrom.
        angle_tolerance: angle tolerance, degrees.

    Returns:
        Comma-joined letters, sorted (``"a,b"``, ``"c,c,e"``).

    Raises:
        StructureError: stage ``symmetry``, reason ``spglib_failed``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = SpacegroupAnalyzer(
                structure, symprec=symprec, angle_tolerance=angle_tolerance
            ).get_symmetry_dataset()
        letters = {
            int(eq): str(w)
            for eq, w in zip(dataset.equivalent_atoms, dataset.wyckoffs, strict=True)
        }
    except Exception as exc:  # noqa: BLE001 - spglib signals failure by several exceptions
        raise StructureError(
            "symmetry",
            "spglib_failed",
            f"symprec={symprec}, angle_tolerance={angle_tolerance}: {type(exc).__name__}: {exc}",
        ) from exc
    return ",".join(sorted(letters.values()))


def _site_radius(site_species: dict) -> float:
    """The largest covalent radius among a (possibly disordered) site's elements."""
    radii = [CovalentRadius.radius.get(getattr(sp, "symbol", str(sp))) for sp in site_species]
    known = [r for r in radii if r is not None]
    if not known:
        raise KeyError(f"no covalent radius for {[str(sp) for sp in site_species]}")
    return max(known)


def bonds(structure: Structure, scale: float = BOND_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Every bond ``d <= scale * (r_i + r_j)`` (covalent radii), each listed once.

    One vectorised neighbour search (``Structure.get_neighbor_list``) over the longest
    possible bond, then a per-pair radius test; a disordered site uses the largest radius
    of its elements.

    Args:
        structure: the structure.
        scale: bond-length factor over the sum of covalent radii.

    Returns:
        ``pairs`` (E, 2) site indices i <= j and ``images`` (E, 3): site j in cell
        ``image`` is bonded to site i in the home cell.

    Raises:
        KeyError: an element has no covalent radius.
    """
    radii = np.array([_site_radius(site.species) for site in structure])
    r_max = scale * 2 * float(radii.max())
    centers, neighbors, images, distances = structure.get_neighbor_list(r_max)
    images = np.rint(images).astype(int)
    bonded = distances <= scale * (radii[centers] + radii[neighbors])
    # Each bond is found from both ends: keep i < j, or i == j with a positive image.
    first_nonzero = np.where(images != 0, images, 0)
    sign = np.sign(first_nonzero[np.arange(len(images)), np.argmax(images != 0, axis=1)])
    once = (centers < neighbors) | ((centers == neighbors) & (sign > 0))
    keep = bonded & once
    return np.stack([centers[keep], neighbors[keep]], axis=1), images[keep]


def bonded_structure(structure: Structure, scale: float = BOND_SCALE) -> StructureGraph:
    """The bonds of :func:`bonds` as a pymatgen ``StructureGraph`` (for pymatgen's tools).

    Args:
        structure: the structure.
        scale: bond-length factor over the sum of covalent radii.

    Returns:
        A ``StructureGraph`` with periodic images on its edges.
    """
    pairs, images = bonds(structure, scale)
    graph = StructureGraph.from_empty_graph(structure, name="bonds")
    for (i, j), image in zip(pairs.tolist(), images.tolist(), strict=True):
        graph.graph.add_edge(i, j, to_jimage=tuple(image))
    return graph


def larsen_dimensionality(n_sites: int, pairs: np.ndarray, images: np.ndarray) -> int:
    """Larsen dimensionality of a periodic bond network: the largest over its components.

    The dimensionality of a bonded component is the rank of the lattice translations that
    map it onto itself (Larsen et al. 2019). Walking each component of the quotient graph
    (sites in the home cell) gives every site an offset; each bond that closes a loop adds
    the translation ``offset_i + image - offset_j``; the rank of those is the answer. Same
    result as ``get_dimensionality_larsen`` (tests check it on COD entries), in O(bonds)
    instead of a rank test per visited image.

    Args:
        n_sites: sites in the cell.
        pairs: (E, 2) bonded site indices.
        images: (E, 3) cell of the second site.

    Returns:
        0, 1, 2 or 3.
    """
    adjacency: list[list[tuple[int, tuple[int, int, int]]]] = [[] for _ in range(n_sites)]
    for (i, j), (x, y, z) in zip(pairs.tolist(), images.tolist(), strict=True):
        adjacency[i].append((j, (x, y, z)))
        adjacency[j].append((i, (-x, -y, -z)))
    offset: list[np.ndarray | None] = [None] * n_sites
    best = 0
    for start in range(n_sites):
        if offset[start] is not None:
            continue
        offset[start] = np.zeros(3, dtype=int)
        queue = [start]
        loops: list[np.ndarray] = []
        while queue:
            i = queue.pop()
            for j, image in adjacency[i]:
                reached = offset[i] + np.asarray(image)
                if offset[j] is None:
                    offset[j] = reached
                    queue.append(j)
                elif np.any(reached != offset[j]):
                    loops.append(reached - offset[j])
        if loops:
            best = max(best, int(np.linalg.matrix_rank(np.array(loops))))
        if best == 3:
            break
    return best


def structural_dimensionality(
    structure: Structure, max_sites: int = MAX_DIMENSIONALITY_SITES
) -> tuple[int | None, str | None]:
    """Larsen dimensionality (0, 1, 2 or 3) of the bonded network, or why there is none.

    Bonds from covalent radii (:func:`bonds`), dimensionality by
    :func:`larsen_dimensionality`.

    Args:
        structure: the structure.
        max_sites: larger structures are not analysed.

    Returns:
        ``(dimensionality, None)``, or ``(None, reason)`` with reason ``too_many_sites``,
        ``no_covalent_radius`` or ``larsen_failed``.
    """
    if len(structure) > max_sites:
        return None, "too_many_sites"
    try:
        pairs, images = bonds(structure)
    except KeyError:
        return None, "no_covalent_radius"
    try:
        return larsen_dimensionality(len(structure), pairs, images), None
    except Exception:  # noqa: BLE001 - never let one odd structure stop a run
        return None, "larsen_failed"
