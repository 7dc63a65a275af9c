r"""Preferred orientation (March-Dollase) of whole reflection families from one stored hkl.

A powder peak's family ``{hkl}`` holds every ``R h`` for ``R`` in the crystal's point group
(in the hkl basis). The store keeps one representative ``h`` per peak; the point-group
rotations preserve the reciprocal metric, so every member has the same ``|g| = |B R h| =
|B h| = 1/d``. With the preferred-orientation axis ``a`` (a unit Cartesian vector along a
low-index reciprocal direction ``B h_a``), member ``g`` makes the angle

    cos(alpha_g) = (B R_g h) . a / |B h| = h . (R_g^T B^T a) / |B h|,

and the family's March-Dollase factor is the mean over the group

    P(h) = mean_g (r^2 cos^2 alpha_g + sin^2 alpha_g / r)^(-3/2),

the same as the mean over the family's distinct members (each appears |G| / |orbit| times).
Only proper rotations are used: the inversion (and so every improper operation) maps
``cos`` to ``-cos``, which the factor does not see. Per material this needs the rotations
(<= 24) and ``B``, computed once from the structure; per (sample, phase) the factors are one
``(P x 3) @ (3 x n_ops)`` product. The proper point groups have orders 1, 2, 3, 4, 6, 8,
12 and 24, all dividing 24, so tables are padded to a common length by repeating each group
(the mean is unchanged).

Conventions: ``B`` has the reciprocal basis vectors (no 2 pi) as columns, ``g = B h`` in
1/angstrom; spglib's rotations ``W`` act on fractional coordinates, ``x' = W x``, so they act
on Miller indices as ``h' = W^-T h``; over a whole group ``{W^-T} = {W^T}``.

A stored peak that merges several families at one two-theta (cubic 300 and 221, accidental
overlaps) gets the factor of its representative's family.
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


def proper_rotations_hkl(
    structure: Any, symprec: float = 0.1, angle_tolerance: float = 5.0
) -> np.ndarray:
    """The point group's proper rotations acting on Miller indices, ``(G, 3, 3)`` int.

    From spglib via pymatgen's ``SpacegroupAnalyzer`` in the structure's own cell
    (fractional ``W``, returned as ``W^T``; see the module docstring).
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    rotations = {
        tuple(np.rint(op.rotation_matrix).astype(int).T.ravel())
        for op in analyzer.get_point_group_operations(cartesian=False)
        if round(np.linalg.det(op.rotation_matrix)) == 1
    }
    return np.array(sorted(rotations), dtype=np.int64).reshape(-1, 3, 3)


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
        ``rotations (M, L, 3, 3)`` float64, each material's group repeated to the common
        length L (the least common multiple of the orders, <= 24), and ``B (M, 3, 3)``.
    """
    if not structures:
        raise ValueError("orientation_tables needs at least one structure (got none)")
    groups = [proper_rotations_hkl(s, symprec, angle_tolerance) for s in structures]
    length = math.lcm(*(len(g) for g in groups))
    if PROPER_GROUP_LENGTH % length:
        raise ValueError(
            f"point-group orders {sorted({len(g) for g in groups})} are not crystallographic "
            f"(their least common multiple {length} does not divide {PROPER_GROUP_LENGTH})"
        )
    rotations = np.stack([np.tile(g, (length // len(g), 1, 1)) for g in groups])
    bases = np.stack([reciprocal_basis(s) for s in structures])
    return rotations.astype(np.float64), bases


def axis_projections(rotations: Tensor, basis: Tensor, axes: Tensor) -> Tensor:
    """``u_g = R_g^T B^T a`` for each material, candidate axis and rotation: ``(M, C, L, 3)``.

    Args:
        rotations: ``(M, L, 3, 3)`` Miller-index rotations.
        basis: ``(M, 3, 3)`` reciprocal bases (columns).
        axes: ``(C, 3)`` Miller indices of the candidate axes.
    """
    cart = torch.einsum("mij,cj->mci", basis, axes.to(basis.dtype))  # B h_a
    unit = cart / cart.norm(dim=-1, keepdim=True)
    along = torch.einsum("mji,mcj->mci", basis, unit)  # B^T a
    return torch.einsum("mgji,mcj->mcgi", rotations, along)  # R_g^T (B^T a)


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
        projections: ``(..., L, 3)`` ``R_g^T B^T a`` of the phase's material and axis.
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
