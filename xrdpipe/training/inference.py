"""One batched inference for training, cross-validation and prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


@torch.no_grad()
def predict_batched(
    fn: Callable[[Tensor], Tensor],
    x: np.ndarray | Tensor,
    batch: int,
    device: torch.device | str = "cpu",
    n_outputs: int | None = None,
) -> Tensor:
    """``fn`` applied to ``x`` in batches of ``batch`` rows, outputs concatenated on the CPU.

    Args:
        fn: a network in eval mode (or its ``predict``, or a loaded exported module).
        x: ``(n, n_points)`` patterns; numpy rows are made float32 and contiguous.
        batch: rows per call.
        device: where each batch is sent before ``fn``.
        n_outputs: the width of an empty result (``x`` with no rows); else ``fn``'s own.

    Returns:
        ``(n, n_outputs)`` float32 outputs on the CPU.
    """
    out = []
    for i in range(0, len(x), batch):
        part = x[i : i + batch]
        if isinstance(part, np.ndarray):
            part = torch.from_numpy(np.ascontiguousarray(part, np.float32))
        out.append(fn(part.to(device)).float().cpu())
    if out:
        return torch.cat(out)
    return torch.zeros((0, 0 if n_outputs is None else n_outputs), dtype=torch.float32)
