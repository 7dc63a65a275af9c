"""Synthetic crystals: random atoms on the Wyckoff positions of a drawn space group.

Each structure index ``i`` of a synthetic subset is one independent draw, seeded by
``(seed, i)`` only, so the ``i``-th structure is the same whatever the chunking or the
number of workers (:func:`structure_seed`). One draw (:func:`draw_parameters`, then
:func:`generate_structure` and :func:`synthesize_structure`):

1. **Space group**: a crystal system uniformly from the seven (or, with
   ``balance_over="lattice_system"``, one of paper 000's seven lattice systems), then a
   space group uniformly among that system's (:func:`space_groups_of`). Nothing is fitted to
   any COD subset (those are the test set).
2. **Elements**: the number of elements from ``element_count_weights`` (1 to 5), then that
   many distinct elements uniformly from ``elements`` (:data:`DEFAULT_ELEMENTS`).
3. **Cell size**: a target number of atoms in the conventional cell, log-uniform on
   ``[max(min_atoms, n_elements), max_atoms]`` (with ``cell_size="primitive"`` the target
   counts the primitive cell, and the conventional cell gets that times the group's lattice
   points, :func:`~xrdpipe.structures.wyckoff.lattice_points`); each element first gets one
   Wyckoff position, then positions are added to random elements while one still fits under the
   target (:func:`assign_wyckoff_sites`). A position is drawn among those whose
   multiplicity fits with probability proportional to its multiplicity (general positions
   are favoured: few orbits, as in real cells); one without free coordinates is used once.
4. **Lattice and coordinates** (:func:`generate_structure`, geometry in
   :mod:`xrdpipe.structures.wyckoff`): a random lattice of the group's type
   (:func:`~xrdpipe.structures.wyckoff.random_lattice`) whose volume is, per atom, uniform
   between its covalent- and van der Waals-sphere volume, times a volume factor drawn
   uniformly from ``volume_factor_range``; the orbits are placed one by one at random free
   coordinates, every pair of atoms at least ``distance_factor x (r_A + r_B)`` apart
   (covalent radii, Cordero 2008). Up to ``lattice_attempts`` lattices are tried. This
   numpy generator replaced pyxtal's own placement (``random_crystal``), which took
   0.8 s of CPU per draw and 1.1 s per kept structure on the same draws, against 15 and
   18 ms here (300 draws, seed 0); pyxtal still provides the Wyckoff tables.
5. **Checks**: the shortest distances are checked again on the pymatgen structure (every
   periodic image); spglib labels it at the subset's tolerances (0.1 angstrom, 5 degrees)
   through :func:`~xrdpipe.structures.symmetry.analyse_symmetry`. A structure whose spglib
   space group is not the one requested (atoms on special positions can add symmetry) is
   kept with spglib's label and ``symmetry_changed=True``, or quarantined when
   ``keep_symmetry_changes`` is off.

A failed draw is never dropped: :func:`synthesize_structure` returns a quarantine row
with its stage and reason (:data:`SYNTHETIC_FAILURE_REASONS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from xrdpipe.config.synthetic import DEFAULT_ELEMENTS, SyntheticConfig
from xrdpipe.structures.wyckoff import (
    BALANCED_CLASSES,
    RHOMBOHEDRAL_SPACE_GROUPS,
    SPACE_GROUP_RANGES,
    WyckoffPosition,
    atomic_radii,
    lattice_points,
    place_orbits,
    shortest_distance_violation,
    space_groups_of,
    wyckoff_positions,
    wyckoff_table,
)

SYNTHETIC_SOURCE = "synthetic"
"""The ``source`` column of synthetic manifest rows (the pyxtal version is appended)."""

SYNTHETIC_COLUMNS = (
    "synthetic_index",
    "generation_seed",
    "requested_space_group",
    "requested_crystal_system",
    "species",
    "num_ions",
    "wyckoff_sites",
    "spglib_wyckoff_letters",
    "target_atoms",
    "volume_factor",
    "pseudo_symmetric",
    "symmetry_changed",
)
"""Columns a synthetic manifest has after :data:`~xrdpipe.structures.manifest.MANIFEST_COLUMNS`
(and its quarantine after the quarantine columns, less ``spglib_wyckoff_letters`` and
``symmetry_changed``)."""

SYNTHETIC_FAILURE_REASONS = {
    "wyckoff_assignment_failed": "generate",
    "incompatible_composition": "generate",
    "placement_failed": "generate",
    "distance_check_failed": "distance",
    "spglib_failed": "symmetry",
    "symmetry_changed": "symmetry",
    "unexpected_error": "generate",
}
"""Quarantine reasons of a synthetic draw and their stage."""


@dataclass(frozen=True)
class SyntheticDraw:
    """The generation parameters of one synthetic structure (all in its manifest row).

    Attributes:
        index: the structure index in its subset.
        seed: the structure's own seed (:func:`structure_seed`); with the config it
            reproduces the draw.
        space_group: the space group requested.
        crystal_system: its crystal system.
        species: element symbols, one per species.
        sites: Wyckoff positions of each species (``"4a"``: multiplicity and letter).
        target_atoms: the drawn target of atoms per cell (``config.cell_size``: the
            conventional cell, or the primitive one).
        volume_factor: the cell volume over the sum of per-atom volumes.
        pseudo_symmetric: its free coordinates are drawn near the eighths of the cell
            (``config.pseudo_symmetric_share``, decided on the seed's third stream).
    """

    index: int
    seed: int
    space_group: int
    crystal_system: str
    species: tuple[str, ...]
    sites: tuple[tuple[str, ...], ...]
    target_atoms: int
    volume_factor: float
    pseudo_symmetric: bool = False

    @property
    def num_ions(self) -> tuple[int, ...]:
        """Atoms of each species in the conventional cell."""
        return tuple(sum(int(site[:-1]) for site in sites) for sites in self.sites)

    @property
    def wyckoff_sites(self) -> str:
        """The sites as one string: ``"Na:4a;Cl:4b"`` (species in order, then positions)."""
        return ";".join(
            f"{el}:{','.join(sites)}" for el, sites in zip(self.species, self.sites, strict=True)
        )


class SyntheticFailure(Exception):
    """A draw that produced no acceptable structure.

    Attributes:
        reason: one of :data:`SYNTHETIC_FAILURE_REASONS`.
        detail: what failed, with the values.
    """

    def __init__(self, reason: str, detail: str):
        assert reason in SYNTHETIC_FAILURE_REASONS, f"{reason=} is not a known reason"
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    @property
    def stage(self) -> str:
        """The quarantine stage of the reason."""
        return SYNTHETIC_FAILURE_REASONS[self.reason]


def structure_seed(seed: int, index: int) -> int:
    """The seed of structure ``index`` of a subset seeded ``seed`` (a 63-bit integer).

    From ``numpy.random.SeedSequence([seed, index])``: independent of chunking and workers.
    """
    if index < 0:
        raise ValueError(f"structure index {index} must be >= 0")
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, index]).generate_state(
        1, np.uint64
    )
    return int(state[0] >> np.uint64(1))


def material_id(index: int) -> str:
    """The material id of synthetic structure ``index``: ``synth-00000042``.

    Zero-padded to 8 digits, so alphabetical order (the manifest's order for ids that are
    not COD numbers) is index order; a valid material id and file name.
    """
    if not 0 <= index < 10**8:
        raise ValueError(f"synthetic index {index} must be in [0, 10**8)")
    return f"synth-{index:08d}"


def assign_wyckoff_sites(
    space_group: int, n_species: int, target_atoms: int, max_atoms: int, rng: np.random.Generator
) -> tuple[tuple[str, ...], ...] | None:
    """Wyckoff positions for each species: one each, then more up to ``target_atoms``.

    Each species first gets one position that leaves room (the smallest multiplicity) for
    the species still without one, even past the target but never past ``max_atoms``;
    then positions go to random species while one fits under the target. A position is
    drawn with probability proportional to its multiplicity among those that fit; one
    without free coordinates is used once.

    Args:
        space_group: the space group.
        n_species: number of species.
        target_atoms: atoms per conventional cell aimed at.
        max_atoms: hard bound on atoms per conventional cell.
        rng: the draw's generator.

    Returns:
        The positions of each species (``"4a"`` strings), or ``None`` when the species do
        not fit under ``max_atoms``.
    """
    positions = wyckoff_positions(space_group)
    used: set[str] = set()
    sites: list[list[str]] = [[] for _ in range(n_species)]
    total = 0

    def fitting(limit: int) -> list[tuple[str, int, bool]]:
        return [p for p in positions if p[1] <= limit and (p[2] or p[0] not in used)]

    def place(species: int, position: tuple[str, int, bool]) -> None:
        nonlocal total
        letter, mult, free = position
        sites[species].append(f"{mult}{letter}")
        total += mult
        if not free:
            used.add(letter)

    def pick(choices: list[tuple[str, int, bool]]) -> tuple[str, int, bool]:
        weights = np.array([p[1] for p in choices], dtype=float)
        return choices[int(rng.choice(len(choices), p=weights / weights.sum()))]

    smallest = min(p[1] for p in positions)
    for species in range(n_species):
        reserve = (n_species - species - 1) * smallest
        ceiling = max_atoms - total - reserve
        choices = fitting(min(max(target_atoms - total - reserve, smallest), ceiling))
        choices = choices or fitting(ceiling)  # the small positions may be used up
        if not choices:
            return None
        place(species, pick(choices))
    while choices := fitting(target_atoms - total):
        species = int(rng.integers(n_species))
        place(species, pick(choices))
    return tuple(tuple(s) for s in sites)


class SyntheticDrawFailure(Exception):
    """A :class:`SyntheticFailure` with the draw it happened to (for the quarantine row)."""

    def __init__(self, draw: SyntheticDraw, failure: SyntheticFailure):
        super().__init__(str(failure))
        self.draw = draw
        self.failure = failure


def draw_parameters(index: int, seed: int, config: SyntheticConfig) -> SyntheticDraw:
    """The generation parameters of structure ``index`` (steps 1-3 of the module docstring).

    Raises:
        SyntheticFailure: ``wyckoff_assignment_failed`` when the elements do not fit.
    """
    own_seed = structure_seed(seed, index)
    rng = np.random.default_rng(own_seed)
    classes = BALANCED_CLASSES[config.balance_over]
    groups = space_groups_of(classes[rng.integers(len(classes))], config.balance_over)
    space_group = groups[rng.integers(len(groups))]
    system = next(k for k, (a, b) in SPACE_GROUP_RANGES.items() if a <= space_group <= b)
    weights = np.asarray(config.element_count_weights, dtype=float)
    n_species = int(rng.choice(len(weights), p=weights / weights.sum())) + 1
    picked = rng.choice(len(config.elements), size=n_species, replace=False)
    species = tuple(config.elements[i] for i in picked)
    low = max(config.min_atoms, n_species)
    high = max(config.max_atoms, low)
    target = int(math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1)))))
    target = min(max(target, low), high)
    volume_factor = float(rng.uniform(*config.volume_factor_range))
    points = lattice_points(space_group) if config.cell_size == "primitive" else 1
    sites = assign_wyckoff_sites(
        space_group, n_species, points * target, points * config.max_atoms, rng
    )
    draw = SyntheticDraw(
        index=index,
        seed=own_seed,
        space_group=space_group,
        crystal_system=system,
        species=species,
        sites=sites or tuple(() for _ in species),
        target_atoms=target,
        volume_factor=round(volume_factor, 6),
        pseudo_symmetric=bool(
            config.pseudo_symmetric_share
            and np.random.default_rng([own_seed, 2]).random() < config.pseudo_symmetric_share
        ),
    )
    if sites is None:
        raise SyntheticDrawFailure(
            draw,
            SyntheticFailure(
                "wyckoff_assignment_failed",
                f"{n_species} species do not fit on the Wyckoff positions of space group "
                f"{space_group} within max_atoms={config.max_atoms}",
            ),
        )
    return draw


def generate_structure(draw: SyntheticDraw, config: SyntheticConfig) -> Any:
    """The pymatgen structure of a draw (step 4): random lattice, random free coordinates.

    Up to ``lattice_attempts`` lattices (each with a new volume: per atom uniform between
    its covalent- and van der Waals-sphere volume, times the volume factor); in each, the
    orbits are placed one at a time, positions without free coordinates first, each with
    up to ``placement_attempts`` random points, and every atom kept at least
    :func:`minimum_distance` from every other (periodic images included).

    Args:
        draw: the parameters (:func:`draw_parameters`, or written by hand).
        config: distance factor, axis ratio and attempts.

    Returns:
        A pymatgen ``Structure`` (conventional cell) that passes
        :func:`shortest_distance_violation`.

    Raises:
        SyntheticFailure: ``incompatible_composition`` (a position the group does not
            have, or a position without free coordinates used twice), ``placement_failed``
            (no lattice and placement kept the distances), ``distance_check_failed``.
    """
    from pymatgen.core import Lattice, Structure

    table, _ = wyckoff_table(draw.space_group)
    by_letter = {w.letter: w for w in table}
    what = f"space group {draw.space_group}, {draw.wyckoff_sites}"
    sites: list[tuple[str, WyckoffPosition]] = []
    for element, positions in zip(draw.species, draw.sites, strict=True):
        for label in positions:
            position = by_letter.get(label.lstrip("0123456789"))
            if position is None or f"{position.multiplicity}{position.letter}" != label:
                allowed = ", ".join(f"{w.multiplicity}{w.letter}" for w in table)
                raise SyntheticFailure(
                    "incompatible_composition",
                    f"{what}: no Wyckoff position {label} (allowed: {allowed})",
                )
            sites.append((element, position))
    fixed = [w.letter for _, w in sites if not w.free]
    if len(fixed) != len(set(fixed)):
        raise SyntheticFailure(
            "incompatible_composition",
            f"{what}: a position without free coordinates holds one orbit only",
        )
    rng = np.random.default_rng([draw.seed, 1])  # steps 1-3 used the seed's first stream
    for _ in range(config.lattice_attempts):
        volume = sum(
            n * 4.0 / 3.0 * np.pi * rng.uniform(*atomic_radii(el)) ** 3
            for el, n in zip(draw.species, draw.num_ions, strict=True)
        )
        placed = place_orbits(
            draw.space_group,
            sites,
            draw.volume_factor * volume,
            config.distance_factor,
            config.axis_ratio,
            config.placement_attempts,
            rng,
            config.pseudo_symmetry_offset if draw.pseudo_symmetric else None,
        )
        if placed is None:
            continue
        matrix, species, coords = placed
        structure = Structure(Lattice(matrix), species, coords)
        violation = shortest_distance_violation(structure, config.distance_factor)
        if violation is not None:
            raise SyntheticFailure("distance_check_failed", f"{what}: {violation}")
        return structure.get_sorted_structure()
    raise SyntheticFailure(
        "placement_failed",
        f"{what}: no placement kept the distances in {config.lattice_attempts} lattices x "
        f"{config.placement_attempts} points per orbit",
    )


def draw_columns(draw: SyntheticDraw) -> dict[str, Any]:
    """The generation parameters as manifest (and quarantine) columns."""
    return {
        "synthetic_index": draw.index,
        "generation_seed": draw.seed,
        "requested_space_group": draw.space_group,
        "requested_crystal_system": draw.crystal_system,
        "species": ",".join(draw.species),
        "num_ions": ",".join(str(n) for n in draw.num_ions),
        "wyckoff_sites": draw.wyckoff_sites,
        "target_atoms": draw.target_atoms,
        "volume_factor": draw.volume_factor,
        "pseudo_symmetric": draw.pseudo_symmetric,
    }


@lru_cache(maxsize=1)
def pyxtal_version() -> str:
    """The installed pyxtal version (part of a synthetic row's ``source``)."""
    from importlib.metadata import version

    return version("pyxtal")


def synthesize_structure(
    index: int,
    seed: int,
    config: SyntheticConfig,
    symprec: float,
    angle_tolerance: float,
    draw: SyntheticDraw | None = None,
) -> tuple[dict | None, dict | None]:
    """One synthetic structure as a manifest row, or its quarantine row.

    Args:
        index: the structure index.
        seed: the subset seed.
        config: the synthetic settings.
        symprec: spglib distance tolerance (the subset's ``symmetry.symprec``).
        angle_tolerance: spglib angle tolerance, degrees.
        draw: parameters to use instead of :func:`draw_parameters` (a hand-made draw).

    Returns:
        ``(row, None)`` with the :data:`~xrdpipe.structures.manifest.MANIFEST_COLUMNS`
        (dimensionality included) and the :data:`SYNTHETIC_COLUMNS`, or ``(None,
        quarantine_row)``.
    """
    import hashlib

    from xrdpipe.errors import StructureError
    from xrdpipe.structures.manifest import CifEntry, structure_row
    from xrdpipe.structures.symmetry import structural_dimensionality, wyckoff_letters

    ident = material_id(index)
    source = f"{SYNTHETIC_SOURCE}:wyckoff-tables-pyxtal-{pyxtal_version()}"

    def quarantined(reason: str, detail: str, used: SyntheticDraw | None) -> tuple[None, dict]:
        row = {
            "cod_id": ident,
            "stage": SYNTHETIC_FAILURE_REASONS[reason],
            "reason": reason,
            "detail": detail[:500],
            "source": source,
        }
        if used is not None:
            row.update(draw_columns(used))
        return None, row

    try:
        if draw is None:
            draw = draw_parameters(index, seed, config)
        structure = generate_structure(draw, config)
        entry = CifEntry(ident, Path(ident), "", source, "")
        row = structure_row(structure, entry, symprec, angle_tolerance)
        row["sha256"] = hashlib.sha256(row["structure_json"].encode()).hexdigest()
        changed = int(row["space_group_number"]) != draw.space_group
        if changed and not config.keep_symmetry_changes:
            return quarantined(
                "symmetry_changed",
                f"requested space group {draw.space_group}, spglib finds "
                f"{row['space_group_number']} ({row['space_group_symbol']}) at "
                f"symprec={symprec}, angle_tolerance={angle_tolerance}",
                draw,
            )
        dimensionality, why = structural_dimensionality(structure)
        row["dimensionality"] = dimensionality
        row["dimensionality_reason"] = why
        row.update(draw_columns(draw))
        row["spglib_wyckoff_letters"] = wyckoff_letters(structure, symprec, angle_tolerance)
        row["symmetry_changed"] = changed
        return row, None
    except SyntheticDrawFailure as exc:
        return quarantined(exc.failure.reason, exc.failure.detail, exc.draw)
    except SyntheticFailure as exc:
        return quarantined(exc.reason, exc.detail, draw)
    except StructureError as exc:
        return quarantined("spglib_failed", f"{exc.reason}: {exc.detail}", draw)
    except Exception as exc:  # noqa: BLE001 - one bad draw never stops a run
        return quarantined("unexpected_error", f"{type(exc).__name__}: {exc}", draw)


__all__ = [
    "DEFAULT_ELEMENTS",
    "BALANCED_CLASSES",
    "RHOMBOHEDRAL_SPACE_GROUPS",
    "SPACE_GROUP_RANGES",
    "SYNTHETIC_COLUMNS",
    "SYNTHETIC_FAILURE_REASONS",
    "SyntheticConfig",
    "SyntheticDraw",
    "SyntheticDrawFailure",
    "SyntheticFailure",
    "assign_wyckoff_sites",
    "draw_columns",
    "draw_parameters",
    "generate_structure",
    "material_id",
    "space_groups_of",
    "structure_seed",
    "synthesize_structure",
    "wyckoff_positions",
]
