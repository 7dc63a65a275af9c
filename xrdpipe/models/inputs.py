"""The input of the 1D classifiers: ``(B, n_points)`` patterns as convolution channels."""

from __future__ import annotations

import torch
from torch import Tensor


def two_theta_coordinate(n_points: int) -> Tensor:
    """The position channel's values, -1 to 1 over the grid, shaped ``(1, 1, n_points)``."""
    return torch.linspace(-1.0, 1.0, n_points).view(1, 1, -1)


def pattern_channels(x: Tensor, n_points: int, coordinate: Tensor | None, network: str) -> Tensor:
    """Patterns ``(B, n_points)`` or ``(B, 1, n_points)`` as ``(B, C, n_points)``.

    Args:
        x: the patterns.
        n_points: the network's grid length.
        coordinate: :func:`two_theta_coordinate` to add as a second channel, or ``None``.
        network: the network's name, for the error.
    """
    if x.dim() == 2:
        x = x.unsqueeze(1)
    assert x.dim() == 3 and x.shape[1:] == (1, n_points), (
        f"{network} expects (B, {n_points}) or (B, 1, {n_points}), got {tuple(x.shape)}"
    )
    if coordinate is not None:
        x = torch.cat([x, coordinate.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
    return x
