r"""Preferred orientation (March-Dollase) of whole reflection families from one stored hkl.

A powder peak's family ``{hkl}`` holds the scattering vectors ``Q_g B h`` for the Cartesian
rotations ``Q_g`` of the crystal's point group (``B``: reciprocal basis, ``g* = B h``). The
store keeps one representative ``h`` per peak; the rotations preserve lengths, so every
member has ``|g*| = |B h| = 1/d``. With the preferred-orientation axis ``a`` (a unit
Cartesian vector along a low-index reciprocal direction ``B h_a``), member ``g`` makes the
angle

    cos(alpha_g) = (Q_g B h) . a / |B h| = h . (B^T Q_g^T a) / |B h|,

and the family's March-Dollase factor is the mean over the group

    P(h) = mean_g (r^2 cos^2 alpha_g + sin^2 alpha_g / r)^(-3/2),

the same as the mean over the family's distinct members (each appears |G| / |orbit| times).
Each improper operation ``S`` is replaced by the proper ``-S`` (the factor sees only
``cos^2``), which leaves the proper rotations of the Laue group. Per material this needs
those rotations (<= 24, from :func:`xrdpipe.diffraction.point_group_rotations`: spglib,
made exactly orthogonal) and ``B``, computed once from the structure; per (sample, phase)
the factors are one ``(P x 3) @ (3 x n_ops)`` product. The proper point groups have orders
1, 2, 3, 4, 6, 8, 12 and 24, all dividing 24, so tables are padded to a common length by
repeating each group (the mean is unchanged).

A stored peak that merges several families at one two-theta (cubic 300 and 221, accidental
overlaps) gets the factor of its representative's family; strained conditions use the
unstrained cell's ``B`` (their Miller indices are the same).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
import torch
from torch import Tensor

CHUNK_ELEMENTS = 1 << 16
"""(peak x rotation) values per step: keeps the temporaries inside the CPU cache."""

PROPER_GROUP_LENGTH = 24
"""Every proper crystallographic point group's order divides this (1, 2, 3, 4, 6, 8, 12, 24)."""


def low_index_axes(max_index: int) -> np.ndarray:
    """Reciprocal directions ``[h k l]``, ``max |index| <= max_index``, coprime, one per +- pair.

    Returns:
        ``(C, 3)`` int, sorted; 13 directions for ``max_index = 1``.
    """
    axes = []
    for hkl in product(range(-max_index, max_index + 1), repeat=3):
        if hkl == (0, 0, 0) or math.gcd(*hkl) != 1:
            continue
        first = next(v for v in hkl if v != 0)
        if first > 0:
            axes.append(hkl)
    return np.array(sorted(axes), dtype=np.int64)


def reciprocal_basis(structure: Any) -> np.ndarray:
    """``B``: reciprocal basis vectors (no 2 pi) as columns, ``g = B h`` in 1/angstrom.

    Args:
        structure: a pymatgen ``Structure`` (or anything with ``lattice.matrix``, rows a, b, c).
    """
    direct = np.asarray(structure.lattice.matrix, dtype=np.float64)
    return np.linalg.inv(direct)  # columns of inv(A) = rows of inv(A)^T = a*, b*, c*


def proper_laue_rotations(
    structure: Any, symprec: float = 0.1, angle_tolerance: float = 5.0
) -> np.ndarray:
    """The proper rotations of a structure's Laue group, Cartesian, ``(G, 3, 3)``, G <= 24.

    Each point-group operation ``S`` (:func:`xrdpipe.diffraction.point_group_rotations`,
    exactly orthogonal) becomes ``det(S) S``; duplicates are dropped.
    """
    from xrdpipe.diffraction import point_group_rotations  # pymatgen: only when needed

    operations = point_group_rotations(structure, symprec, angle_tolerance)
    proper = operations * np.sign(np.linalg.det(operations))[:, None, None]
    _, keep = np.unique(np.round(proper, 6).reshape(len(proper), 9), axis=0, return_index=True)
    return proper[np.sort(keep)]


def orientation_tables(
    structures: Sequence[Any], symprec: float = 0.1, angle_tolerance: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rotations and reciprocal bases of several materials, padded to one length.

    Args:
        structures: pymatgen structures, in the materials' order (the cells the peaks'
            Miller indices refer to).
        symprec: spglib distance tolerance, angstrom (the manifest's: 0.1).
        angle_tolerance: spglib angle tolerance, degrees.

    Returns:
        ``rotations (M, L, 3, 3)`` Cartesian, each material's group repeated to the common
        length L (the least common multiple of the orders, <= 24), and ``B (M, 3, 3)``.
    """
    if not structures:
        raise ValueError("orientation_tables needs at least one structure (got none)")
    groups = [proper_laue_rotations(s, symprec, angle_tolerance) for s in structures]
    length = math.lcm(*(len(g) for g in groups))
    if PROPER_GROUP_LENGTH % length:
        raise ValueError(
            f"point-group orders {sorted({len(g) for g in groups})} are not crystallographic "
            f"(their least common multiple {length} does not divide {PROPER_GROUP_LENGTH})"
        )
    rotations = np.stack([np.tile(g, (length // len(g), 1, 1)) for g in groups])
    bases = np.stack([reciprocal_basis(s) for s in structures])
    return rotations, bases


def axis_projections(rotations: Tensor, basis: Tensor, axes: Tensor) -> Tensor:
    """``u_g = B^T Q_g^T a`` for each material, candidate axis and rotation: ``(M, C, L, 3)``.

    Args:
        rotations: ``(M, L, 3, 3)`` Cartesian rotations ``Q_g``.
        basis: ``(M, 3, 3)`` reciprocal bases (columns).
        axes: ``(C, 3)`` Miller indices of the candidate axes.
    """
    cart = torch.einsum("mij,cj->mci", basis, axes.to(basis.dtype))  # B h_a
    unit = cart / cart.norm(dim=-1, keepdim=True)
    turned = torch.einsum("mgji,mcj->mcgi", rotations.to(basis.dtype), unit)  # Q_g^T a
    return torch.einsum("mji,mcgj->mcgi", basis, turned)  # B^T (Q_g^T a)


def inverse_reciprocal_norms(hkl: Tensor, basis: Tensor) -> Tensor:
    """``1 / |B h|`` (angstrom, = d of the unstrained cell) per peak; 0 for ``h = 0`` (padding).

    Args:
        hkl: ``(M, S, P, 3)`` Miller indices.
        basis: ``(M, 3, 3)`` reciprocal bases.
    """
    norm = torch.einsum("mij,mspj->mspi", basis, hkl.to(basis.dtype)).norm(dim=-1)
    return torch.where(norm > 0, 1.0 / norm.clamp(min=1e-12), 0.0)


def march_dollase_peak_factors(
    hkl: Tensor, inverse_norm: Tensor, projections: Tensor, ratio: Tensor
) -> Tensor:
    """The March-Dollase factor of each peak's whole family (see the module docstring).

    Evaluated as ``mean_g (c_g^2 (r^2 - 1/r) + 1/r)^(-3/2)`` (the same as
    :func:`~xrdpipe.patterns.physics.march_dollase_factor`), in chunks of rows that stay in
    the CPU cache.

    Args:
        hkl: ``(..., P, 3)`` representative Miller indices.
        inverse_norm: ``(..., P)`` ``1 / |B h|``.
        projections: ``(..., L, 3)`` ``B^T Q_g^T a`` of the phase's material and axis.
        ratio: ``(...)`` March-Dollase r of the phase.

    Returns:
        ``(..., P)`` factors (1 everywhere for r = 1).
    """
    lead, (n_peaks, n_ops) = ratio.shape, (hkl.shape[-2], projections.shape[-2])
    unit = (hkl.to(projections.dtype) * inverse_norm.unsqueeze(-1)).reshape(-1, n_peaks, 3)
    proj = projections.reshape(-1, n_ops, 3).transpose(1, 2)
    r = ratio.reshape(-1, 1, 1).to(projections.dtype)
    slope, offset = r.square() - 1.0 / r, 1.0 / r
    out = torch.empty(unit.shape[:2], dtype=projections.dtype, device=projections.device)
    rows = max(1, CHUNK_ELEMENTS // (n_peaks * n_ops))
    for start in range(0, unit.shape[0], rows):
        sl = slice(start, start + rows)
        cos2 = torch.bmm(unit[sl], proj[sl]).square_()
        weight = torch.addcmul(offset[sl], slope[sl], cos2).rsqrt_().pow_(3)
        out[sl] = weight.mean(dim=-1)
    return out.reshape(*lead, n_peaks)


def orientation_lookup(
    hkl: Tensor, rotations: Tensor, basis: Tensor, max_axis_index: int
) -> tuple[Tensor, Tensor]:
    """What a sampler keeps: ``1/|B h| (M, S, P)`` and ``B^T Q_g^T a (M, C, L, 3)``.

    Args:
        hkl: ``(M, S, P, 3)`` Miller indices of the peaks.
        rotations: ``(M, L, 3, 3)`` Cartesian rotations.
        basis: ``(M, 3, 3)`` reciprocal bases.
        max_axis_index: the candidate axes (:func:`low_index_axes`).
    """
    axes = torch.as_tensor(low_index_axes(max_axis_index), device=basis.device)
    return inverse_reciprocal_norms(hkl, basis), axis_projections(rotations, basis, axes)


def phase_march_dollase(
    hkl: Tensor,
    lookup: tuple[Tensor, Tensor],
    materials: Tensor,
    strains: Tensor,
    phase_mask: Tensor,
    axis: Tensor,
    ratio: Tensor,
) -> Tensor:
    """March-Dollase factors of drawn phases' peaks, ``(B, K, P)``; 1 for absent phases.

    Args:
        hkl: ``(M, S, P, 3)`` Miller indices of the pool.
        lookup: :func:`orientation_lookup`'s tables.
        materials: ``(B, K)`` material of each phase slot.
        strains: ``(B, K)`` strain condition of each slot.
        phase_mask: ``(B, K)`` present slots.
        axis: ``(B, K)`` index of each slot's axis among the candidates.
        ratio: ``(B, K)`` March-Dollase r of each slot.
    """
    inverse_norm, projections = lookup
    present = phase_mask.nonzero(as_tuple=True)
    mat, strain = materials[present], strains[present]
    factors = torch.ones(
        (*materials.shape, hkl.shape[2]), dtype=projections.dtype, device=projections.device
    )
    factors[present] = march_dollase_peak_factors(
        hkl[mat, strain],
        inverse_norm[mat, strain],
        projections[mat, axis[present]],
        ratio[present],
    )
    return factors
