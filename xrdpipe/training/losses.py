"""Losses of the two papers: total variation distance (002) and the classifier losses (000).

Both models return logits; every loss here takes logits first and the target second, and
computes in float32 whatever autocast dtype the logits came in.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xrdpipe.errors import ConfigError

BCE_EPSILON = 1e-7
"""Probability clip of the softmax + BCE loss (Keras' ``epsilon()``, the paper's framework)."""


def total_variation_distance(p: Tensor, q: Tensor, reduction: str = "mean") -> Tensor:
    """Total variation distance ``0.5 * sum_i |p_i - q_i|`` (paper 002, equation 1).

    It is the share of a sample assigned to a wrong phase: 0 for a perfect prediction, 1 for
    disjoint supports, ``N/2`` times the mean absolute error over the ``N`` phases.

    Args:
        p: distributions ``(..., N)`` (e.g. predicted phase fractions).
        q: distributions of the same shape (e.g. true phase fractions).
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` (one value per sample).

    Returns:
        The distance, reduced as asked.
    """
    assert p.shape == q.shape, f"TVD needs equal shapes, got {tuple(p.shape)} and {tuple(q.shape)}"
    distance = 0.5 * (p.float() - q.float()).abs().sum(dim=-1)
    if reduction == "mean":
        return distance.mean()
    if reduction == "sum":
        return distance.sum()
    if reduction == "none":
        return distance
    raise ConfigError(f"{reduction=} must be 'mean', 'sum' or 'none'")


class TVDLoss(nn.Module):
    """Paper 002's loss: TVD between softmax(logits) (or given fractions) and true fractions."""

    def __init__(self, from_logits: bool = True) -> None:
        super().__init__()
        self.from_logits = from_logits

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean TVD over the batch; ``prediction`` are logits unless ``from_logits=False``."""
        p = torch.softmax(prediction.float(), dim=-1) if self.from_logits else prediction
        return total_variation_distance(p, target)


class SoftmaxBCELoss(nn.Module):
    """Binary cross-entropy on softmax outputs against one-hot targets (paper 000's wording).

    This is Keras' ``binary_crossentropy`` after a softmax layer: probabilities clipped to
    ``[eps, 1 - eps]``, BCE averaged over classes, then over the batch.
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of logits ``(B, C)`` against class indices ``(B,)`` or probabilities ``(B, C)``."""
        p = torch.softmax(logits.float(), dim=-1).clamp(BCE_EPSILON, 1.0 - BCE_EPSILON)
        if target.dim() == 1:
            target = F.one_hot(target.long(), num_classes=logits.shape[-1])
        assert target.shape == p.shape, f"target {tuple(target.shape)} vs logits {tuple(p.shape)}"
        return F.binary_cross_entropy(p, target.float())


def classification_loss(
    kind: Literal["cross_entropy", "bce_softmax"] = "cross_entropy", label_smoothing: float = 0.0
) -> nn.Module:
    """The a-CNN's loss: categorical cross-entropy (default) or paper 000's softmax + BCE.

    Args:
        kind: ``"cross_entropy"`` (the standard multi-class loss) or ``"bce_softmax"``.
        label_smoothing: label smoothing of the cross-entropy (not used by ``bce_softmax``).

    Returns:
        A module called as ``loss(logits, class_indices)``.
    """
    if kind == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if kind == "bce_softmax":
        return SoftmaxBCELoss()
    raise ConfigError(f"classification loss {kind=} must be 'cross_entropy' or 'bce_softmax'")


def accuracy(logits: Tensor, target: Tensor) -> Tensor:
    """Share of samples whose arg-max class equals the target index (a metric, not a loss)."""
    return (logits.argmax(dim=-1) == target).float().mean()
