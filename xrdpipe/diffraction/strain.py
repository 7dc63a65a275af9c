"""Random homogeneous strains of a crystal (paper 002: amplitude < 0.05).

A strain is a symmetric 3x3 Cartesian tensor ``eps``. It deforms each lattice vector as
``a_i' = (I + eps) a_i`` (lattice matrix rows), while fractional coordinates stay fixed.

Sampling, per condition:

1. ``u`` symmetric, its six independent entries uniform in (-1, 1);
2. amplitude ``a`` uniform in (0, max_strain);
3. ``unconstrained`` mode: ``eps = a * u / max|u_ij|`` (paper 002's random strains);
   ``symmetry`` mode: ``u`` is first projected onto the tensors invariant under the
   structure's point group, ``P(u) = mean_R R u R^T`` over its Cartesian rotations, then
   ``eps = a * P(u) / max|P(u)_ij|``. Such a strain keeps the space group.

So ``max|eps_ij| = a < max_strain`` in both modes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

StrainMode = Literal["unconstrained", "symmetry"]

SYMPREC = 0.1
"""spglib distance tolerance (angstrom) for the point group, as ``reference.csv`` used."""

ANGLE_TOLERANCE = 5.0
"""spglib angle tolerance (degrees) for the point group."""

MIN_PROJECTED_NORM = 1e-6
"""A projected strain with max|P(u)_ij| below this is redrawn: rescaling it would blow up
rounding noise (it happens only when u is nearly orthogonal to the invariant tensors)."""

_MAX_REDRAWS = 100


def point_group_rotations(
    structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> np.ndarray:
    """The Cartesian rotations of a structure's point group.

    spglib finds the rotations at a loose tolerance (COD cells are only approximately
    symmetric), so each Cartesian matrix ``A^T R A^-T`` is replaced by its nearest
    orthogonal matrix (polar decomposition); averaging over exact rotations makes the
    projection in :func:`project_onto_point_group` an orthogonal projection.

    Args:
        structure: the crystal.
        symprec: spglib distance tolerance (angstrom).
        angle_tolerance: spglib angle tolerance (degrees).

    Returns:
        Array (n_ops, 3, 3) acting on Cartesian column vectors; contains the identity.
    """
    analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    ops = analyzer.get_point_group_operations(cartesian=True)
    rots = np.array([op.rotation_matrix for op in ops], dtype=np.float64).reshape(-1, 3, 3)
    if len(rots) == 0:
        return np.eye(3)[None]
    u, _, vt = np.linalg.svd(rots)
    return u @ vt


def project_onto_point_group(eps: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Mean of ``R eps R^T`` over the rotations: the symmetry-invariant part of ``eps``.

    Args:
        eps: strains, shape (n, 3, 3).
        rotations: Cartesian rotations, shape (n_ops, 3, 3).

    Returns:
        Projected strains, shape (n, 3, 3).
    """
    return np.einsum("rij,njk,rlk->nil", rotations, eps, rotations) / len(rotations)


def _random_symmetric(n: int, rng: np.random.Generator) -> np.ndarray:
    upper = rng.uniform(-1.0, 1.0, size=(n, 6))
    u = np.empty((n, 3, 3))
    iu = np.triu_indices(3)
    u[:, iu[0], iu[1]] = upper
    u[:, iu[1], iu[0]] = upper
    return u


def sample_strains(
    n: int,
    max_strain: float,
    rng: np.random.Generator,
    mode: StrainMode = "unconstrained",
    rotations: np.ndarray | None = None,
) -> np.ndarray:
    """Draw random strain tensors of amplitude (max |eps_ij|) uniform in (0, max_strain).

    Args:
        n: number of strains.
        max_strain: amplitude bound (dimensionless, paper 002: 0.05).
        rng: the random stream (consumed deterministically).
        mode: ``unconstrained`` or ``symmetry`` (needs ``rotations``).
        rotations: Cartesian point-group rotations (n_ops, 3, 3), see
            :func:`point_group_rotations`.

    Returns:
        Symmetric strain tensors, shape (n, 3, 3), float64.
    """
    if n < 0:
        raise ValueError(f"n={n!r} must be >= 0")
    if not 0 < max_strain < 1:
        raise ValueError(f"max_strain={max_strain!r} must be in (0, 1)")
    if mode not in ("unconstrained", "symmetry"):
        raise ValueError(f"mode={mode!r} must be 'unconstrained' or 'symmetry'")
    if mode == "symmetry" and rotations is None:
        raise ValueError("mode='symmetry' needs the point-group rotations")
    amplitude = rng.uniform(0.0, max_strain, size=n)
    u = _random_symmetric(n, rng)
    if mode == "symmetry":
        assert rotations is not None
        u = project_onto_point_group(u, rotations)
        for _ in range(_MAX_REDRAWS):
            bad = np.abs(u).max(axis=(1, 2)) < MIN_PROJECTED_NORM
            if not bad.any():
                break
            u[bad] = project_onto_point_group(_random_symmetric(int(bad.sum()), rng), rotations)
        else:
            raise RuntimeError("could not draw a strain with a non-zero invariant part")
        u = 0.5 * (u + np.swapaxes(u, 1, 2))
    scale = amplitude / np.abs(u).max(axis=(1, 2))
    return u * scale[:, None, None]


def strain_conditions(
    structure: Structure,
    n_train: int,
    n_test: int,
    max_strain: float,
    mode: StrainMode = "unconstrained",
    seed: int = 0,
    material_index: int = 0,
) -> np.ndarray:
    """All strain conditions of one material: train, then test, then the unstrained one.

    Train and test strains are consecutive draws of one stream seeded by
    ``(seed, material_index)``, so they are distinct and reproducible.

    Args:
        structure: the crystal (its point group is used in ``symmetry`` mode).
        n_train: number of training strains (paper 002: 500).
        n_test: number of test strains (paper 002: 200).
        max_strain: amplitude bound.
        mode: ``unconstrained`` or ``symmetry``.
        seed: the subset's seed.
        material_index: the material's index in the subset.

    Returns:
        Array (n_train + n_test + 1, 3, 3); the last one is zero (the reference condition).
    """
    rng = np.random.default_rng([seed, material_index])
    rotations = point_group_rotations(structure) if mode == "symmetry" else None
    eps = sample_strains(n_train + n_test, max_strain, rng, mode=mode, rotations=rotations)
    return np.concatenate([eps, np.zeros((1, 3, 3))], axis=0)


def apply_strain(lattice_matrix: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Strained lattice matrices: each row ``a_i' = (I + eps) a_i``.

    Unlike ``pymatgen.core.Structure.apply_strain`` (which keeps only the diagonal of a
    3x3 strain), this applies the full tensor.

    Args:
        lattice_matrix: lattice vectors as rows (3, 3), angstrom.
        eps: strain (3, 3) or strains (n, 3, 3).

    Returns:
        Strained lattice matrix (3, 3) or matrices (n, 3, 3), angstrom.
    """
    eps = np.asarray(eps, dtype=np.float64)
    deform = np.eye(3) + eps
    # rows: a_i'^T = a_i^T (I + eps)^T
    return np.asarray(lattice_matrix, dtype=np.float64) @ np.swapaxes(deform, -1, -2)
