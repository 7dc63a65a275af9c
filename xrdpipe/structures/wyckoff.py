"""Wyckoff positions, random lattices and the placement of atoms under minimum distances.

The geometry of :mod:`xrdpipe.structures.synthetic`: the Wyckoff tables of the 230 space
groups (pyxtal's, International Tables standard setting, rhombohedral groups on hexagonal
axes), a random lattice of a given type and volume, and :func:`place_orbits`, which puts
one orbit after another at random free coordinates, each atom at least
``distance_factor x (r_A + r_B)`` (covalent radii) from every other.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from xrdpipe.config import LATTICE_SYSTEMS

SPACE_GROUP_RANGES = {
    "triclinic": (1, 2),
    "monoclinic": (3, 15),
    "orthorhombic": (16, 74),
    "tetragonal": (75, 142),
    "trigonal": (143, 167),
    "hexagonal": (168, 194),
    "cubic": (195, 230),
}
"""First and last space-group number of each crystal system (International Tables)."""

RHOMBOHEDRAL_SPACE_GROUPS = (146, 148, 155, 160, 161, 166, 167)
"""The trigonal groups with an R lattice (paper 000's rhombohedral lattice system)."""

LATTICE_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
"""Lattice points per conventional cell of each centring (R: on hexagonal axes)."""


def space_groups_of(system: str, balance_over: str = "crystal_system") -> tuple[int, ...]:
    """The space groups of a crystal system, or of a lattice system (paper 000's seven).

    Args:
        system: a crystal system, or with ``balance_over="lattice_system"`` a lattice system
            (``rhombohedral``: the seven R groups; ``hexagonal``: the hexagonal crystal system
            and the trigonal groups with a P lattice).
        balance_over: ``crystal_system`` or ``lattice_system``.

    Returns:
        The space-group numbers, ascending.
    """
    if balance_over == "lattice_system" and system in ("rhombohedral", "hexagonal"):
        first, last = SPACE_GROUP_RANGES["trigonal"]
        trigonal_p = tuple(n for n in range(first, last + 1) if n not in RHOMBOHEDRAL_SPACE_GROUPS)
        if system == "rhombohedral":
            return RHOMBOHEDRAL_SPACE_GROUPS
        first, last = SPACE_GROUP_RANGES["hexagonal"]
        return trigonal_p + tuple(range(first, last + 1))
    if system not in SPACE_GROUP_RANGES:
        raise ValueError(f"{system!r} is not one of {list(SPACE_GROUP_RANGES)}")
    first, last = SPACE_GROUP_RANGES[system]
    return tuple(range(first, last + 1))


BALANCED_CLASSES = {
    "crystal_system": tuple(SPACE_GROUP_RANGES),
    "lattice_system": LATTICE_SYSTEMS,
}
"""The classes the space-group draw is balanced over, for each ``balance_over``."""


@dataclass(frozen=True)
class WyckoffPosition:
    """One Wyckoff position of a space group (standard setting, conventional cell).

    Attributes:
        letter: its letter.
        multiplicity: atoms of one orbit in the conventional cell.
        free: whether it has free coordinates.
        rotations: (multiplicity, 3, 3) linear parts of its coordinate triplets.
        translations: (multiplicity, 3) their translations (centring included).
    """

    letter: str
    multiplicity: int
    free: bool
    rotations: np.ndarray
    translations: np.ndarray

    def orbit(self, point: np.ndarray) -> np.ndarray:
        """The orbit's fractional coordinates (in [0, 1)) generated from any point."""
        return (self.rotations @ point + self.translations) % 1.0


@lru_cache(maxsize=256)
def wyckoff_table(space_group: int) -> tuple[tuple[WyckoffPosition, ...], str]:
    """The Wyckoff positions (general first) and lattice type of a space group.

    The tables are pyxtal's (International Tables, standard setting; rhombohedral groups
    on hexagonal axes).
    """
    if not 1 <= space_group <= 230:
        raise ValueError(f"space group {space_group} must be in 1..230")
    from pyxtal.symmetry import Group

    group = Group(space_group)
    table = []
    for wp in group:
        affine = np.array([op.affine_matrix for op in wp.ops], dtype=float)
        table.append(
            WyckoffPosition(
                letter=str(wp.letter),
                multiplicity=int(wp.multiplicity),
                free=bool(wp.get_dof() > 0),
                rotations=affine[:, :3, :3],
                translations=affine[:, :3, 3],
            )
        )
    return tuple(table), str(group.lattice_type)


@lru_cache(maxsize=256)
def lattice_points(space_group: int) -> int:
    """Lattice points per conventional cell of a space group: 1 (P), 2 (A, B, C, I), 3 (R), 4 (F).

    The conventional cell (standard setting, rhombohedral groups on hexagonal axes) holds
    this many primitive cells; every Wyckoff multiplicity of the group is a multiple of it.
    """
    if not 1 <= space_group <= 230:
        raise ValueError(f"space group {space_group} must be in 1..230")
    from pyxtal.symmetry import Group

    return LATTICE_POINTS[str(Group(space_group).symbol)[0]]


def wyckoff_positions(space_group: int) -> tuple[tuple[str, int, bool], ...]:
    """The Wyckoff positions of a space group: ``(letter, multiplicity, free)`` tuples.

    Args:
        space_group: International Tables number, 1-230.

    Returns:
        One tuple per position, general position first (standard setting, conventional
        cell).
    """
    return tuple((w.letter, w.multiplicity, w.free) for w in wyckoff_table(space_group)[0])


@lru_cache(maxsize=128)
def atomic_radii(element: str) -> tuple[float, float]:
    """``(covalent, van der Waals)`` radius of an element, angstrom (pymatgen's tables).

    The covalent radii are Cordero et al. (2008), as in
    :func:`xrdpipe.structures.symmetry.bonds`.
    """
    from pymatgen.analysis.local_env import CovalentRadius
    from pymatgen.core import Element

    covalent = CovalentRadius.radius.get(element)
    vdw = Element(element).van_der_waals_radius
    if covalent is None or vdw is None:
        raise ValueError(f"element {element!r} has no covalent or van der Waals radius")
    return float(covalent), float(vdw)


def minimum_distance(first: str, second: str, distance_factor: float) -> float:
    """The shortest distance allowed between two elements: factor x (r_A + r_B), angstrom."""
    return distance_factor * (atomic_radii(first)[0] + atomic_radii(second)[0])


def random_lattice(
    lattice_type: str, volume: float, axis_ratio: float, rng: np.random.Generator
) -> np.ndarray:
    """A random lattice matrix (rows a, b, c) of a lattice type with a given volume.

    Independent axes are ``a`` times a ratio log-uniform on ``[1 / axis_ratio,
    axis_ratio]``; the monoclinic angle beta is uniform on [90, 125] degrees (unique axis
    b, the standard setting); the triclinic angles uniform on [70, 110] degrees; trigonal
    and rhombohedral groups use hexagonal axes.

    Args:
        lattice_type: pyxtal's lattice type (``triclinic`` ... ``cubic``).
        volume: cell volume, cubic angstrom.
        axis_ratio: the largest ratio of two independent axes.
        rng: the draw's generator.

    Returns:
        (3, 3) lattice vectors as rows, angstrom.
    """
    from pymatgen.core import Lattice

    def ratio() -> float:
        return float(np.exp(rng.uniform(-np.log(axis_ratio), np.log(axis_ratio))))

    a, b, c, alpha, beta, gamma = 1.0, 1.0, 1.0, 90.0, 90.0, 90.0
    if lattice_type == "triclinic":
        b, c = ratio(), ratio()
        alpha, beta, gamma = rng.uniform(70.0, 110.0, size=3).tolist()
    elif lattice_type == "monoclinic":
        b, c, beta = ratio(), ratio(), float(rng.uniform(90.0, 125.0))
    elif lattice_type == "orthorhombic":
        b, c = ratio(), ratio()
    elif lattice_type == "tetragonal":
        b, c = 1.0, ratio()
    elif lattice_type in ("hexagonal", "trigonal"):
        b, c, gamma = 1.0, ratio(), 120.0
    elif lattice_type != "cubic":
        raise ValueError(f"lattice type {lattice_type!r} is not one of pyxtal's seven")
    unit = Lattice.from_parameters(a, b, c, alpha, beta, gamma)
    scale = (volume / unit.volume) ** (1.0 / 3.0)
    return unit.matrix * scale


_IMAGES = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])


def _too_close(
    orbit: np.ndarray,
    limits_new: np.ndarray,
    placed: np.ndarray,
    limits_placed: np.ndarray,
    matrix: np.ndarray,
) -> bool:
    """Whether a new orbit comes closer than its limits to itself or to placed atoms.

    Fractional differences are wrapped to [-0.5, 0.5) and tried in the 27 neighbouring
    cells (exact for the cells :func:`random_lattice` makes; the pymatgen check after
    placement is exact for any cell).
    """
    others = np.concatenate([placed, orbit])
    limit = np.concatenate([limits_placed, limits_new])[None, :] + limits_new[:, None]
    diff = orbit[:, None, :] - others[None, :, :]
    diff -= np.round(diff)
    cart = diff @ matrix  # (m, n, 3)
    images = _IMAGES @ matrix  # (27, 3)
    # |d + t|^2 = |d|^2 + 2 d.t + |t|^2 for the 27 lattice translations t
    squared = (cart**2).sum(-1)[:, :, None] + 2.0 * (cart @ images.T) + (images**2).sum(-1)
    n_placed = len(placed)
    rows = np.arange(len(orbit))
    squared[rows, n_placed + rows, 13] = np.inf  # an atom's own zero image is no contact
    return bool((squared.min(axis=2) < limit**2).any())


def shortest_distance_violation(structure: Any, distance_factor: float) -> str | None:
    """The closest pair under ``distance_factor x (r_A + r_B)``, described, or ``None``.

    Checks every pair and periodic image with pymatgen's neighbour list.
    """
    symbols = [site.specie.symbol for site in structure]
    r_max = max(minimum_distance(el, el, distance_factor) for el in set(symbols))
    centers, neighbors, _, distances = structure.get_neighbor_list(r_max + 1e-6)
    worst: tuple[float, int, int, float, float] | None = None
    for i, j, d in zip(centers.tolist(), neighbors.tolist(), distances.tolist(), strict=True):
        limit = minimum_distance(symbols[i], symbols[j], distance_factor)
        if d < limit - 1e-6 and (worst is None or d / limit < worst[0]):
            worst = (d / limit, i, j, d, limit)
    if worst is None:
        return None
    _, i, j, d, limit = worst
    return (
        f"{symbols[i]}{i}-{symbols[j]}{j} at {d:.3f} A < {distance_factor} x "
        f"(r_{symbols[i]} + r_{symbols[j]}) = {limit:.3f} A"
    )


PSEUDO_SYMMETRY_GRID = 8
"""A pseudo-symmetric point's coordinates sit near multiples of 1/8 (halves, quarters and
eighths of the cell: the sites of common parent structures)."""


def place_orbits(
    space_group: int,
    sites: list[tuple[str, WyckoffPosition]],
    volume: float,
    distance_factor: float,
    axis_ratio: float,
    placement_attempts: int,
    rng: np.random.Generator,
    pseudo_symmetry_offset: float | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """One random lattice, then the orbits one at a time at random points, or ``None``.

    Positions without free coordinates go first (they cannot move), then the largest
    orbits; an orbit with free coordinates gets up to ``placement_attempts`` random points.

    Args:
        space_group: the space group (its lattice type).
        sites: ``(element, position)`` of every orbit.
        volume: the cell volume, cubic angstrom.
        distance_factor: shortest distance over the sum of covalent radii.
        axis_ratio: the largest ratio of two independent axes (:func:`random_lattice`).
        placement_attempts: random points per orbit with free coordinates.
        rng: the draw's generator.
        pseudo_symmetry_offset: ``None``: uniform random points; else each coordinate of a
            point is the nearest multiple of 1 / :data:`PSEUDO_SYMMETRY_GRID` plus a normal
            offset of this standard deviation (atoms near higher-symmetry sites).

    Returns:
        ``(lattice matrix, species, fractional coordinates)``, or ``None`` when an orbit
        found no place in this lattice.
    """
    _, lattice_type = wyckoff_table(space_group)
    ordered = sorted(sites, key=lambda s: (s[1].free, -s[1].multiplicity))
    matrix = random_lattice(lattice_type, volume, axis_ratio, rng)
    placed = np.zeros((0, 3))
    limits = np.zeros(0)
    species: list[str] = []
    for element, position in ordered:
        own = np.full(
            position.multiplicity, minimum_distance(element, element, distance_factor) / 2
        )
        for _ in range(placement_attempts if position.free else 1):
            point = rng.random(3)
            if pseudo_symmetry_offset is not None:
                point = np.round(point * PSEUDO_SYMMETRY_GRID) / PSEUDO_SYMMETRY_GRID
                point = point + rng.normal(0.0, pseudo_symmetry_offset, 3)
            orbit = position.orbit(point)
            if not _too_close(orbit, own, placed, limits, matrix):
                break
        else:
            return None
        placed = np.concatenate([placed, orbit])
        limits = np.concatenate([limits, own])
        species.extend([element] * position.multiplicity)
    return matrix, species, placed
