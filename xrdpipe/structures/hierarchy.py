"""From space groups to crystal and lattice systems: labels, and a classifier's probabilities.

Every space group belongs to one crystal system (International Tables number ranges,
:data:`~xrdpipe.structures.wyckoff.SPACE_GROUP_RANGES`) and to one of paper 000's seven
lattice systems (the trigonal groups split by their lattice: the seven R groups are
rhombohedral, the others hexagonal). A space-group classifier therefore answers the coarser
questions too: the probability of a system is the sum of its groups' probabilities
(:func:`system_probabilities`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xrdpipe.config import CRYSTAL_SYSTEMS, LATTICE_SYSTEMS
from xrdpipe.structures.wyckoff import RHOMBOHEDRAL_SPACE_GROUPS, SPACE_GROUP_RANGES

SYSTEMS = {"crystal_system": CRYSTAL_SYSTEMS, "lattice_system": LATTICE_SYSTEMS}
"""The classes of each coarser target, in the project's order."""


def system_of_space_group(number: int | str, system: str = "crystal_system") -> str:
    """The crystal system or lattice system of space group ``number`` (1-230).

    Args:
        number: International Tables number (an int, or a class name such as ``"225"``).
        system: ``crystal_system`` or ``lattice_system``.

    Returns:
        One of :data:`~xrdpipe.config.CRYSTAL_SYSTEMS` or
        :data:`~xrdpipe.config.LATTICE_SYSTEMS`.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system {system!r} is not one of {list(SYSTEMS)}")
    try:
        n = int(number)
    except (TypeError, ValueError):
        raise ValueError(f"space group {number!r} is not a number from 1 to 230") from None
    found = [c for c, (first, last) in SPACE_GROUP_RANGES.items() if first <= n <= last]
    if not found:
        raise ValueError(f"space group {number!r} is not a number from 1 to 230")
    crystal_system = found[0]
    if system == "lattice_system" and crystal_system == "trigonal":
        return "rhombohedral" if n in RHOMBOHEDRAL_SPACE_GROUPS else "hexagonal"
    return crystal_system


def system_probabilities(
    probabilities: np.ndarray, groups: Sequence[int | str], system: str = "crystal_system"
) -> np.ndarray:
    """Sum a space-group classifier's probabilities over each crystal or lattice system.

    Args:
        probabilities: ``(B, G)`` probabilities over ``groups`` (rows summing to 1).
        groups: the classifier's classes, space-group numbers in its output order.
        system: ``crystal_system`` or ``lattice_system``.

    Returns:
        ``(B, 7)`` probabilities over ``SYSTEMS[system]``, in that order.
    """
    if system not in SYSTEMS:
        raise ValueError(f"system {system!r} is not one of {list(SYSTEMS)}")
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(groups):
        raise ValueError(f"probabilities {p.shape} must be (B, len(groups)={len(groups)})")
    classes = SYSTEMS[system]
    membership = np.zeros((len(groups), len(classes)))
    for i, g in enumerate(groups):
        membership[i, classes.index(system_of_space_group(g, system))] = 1.0
    return p @ membership
