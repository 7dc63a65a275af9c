"""The all-convolutional classifier (a-CNN) of paper 000 and its class activation maps.

Paper 000 ("See Deeper", Chakraborty & Sharma) classifies a 1D powder pattern into the seven
lattice systems with a deliberately small network:

1. three ``Conv1d`` layers of 32 filters, kernel = stride = 8, 5 and 3 (no padding), each
   followed by ReLU; no pooling between them;
2. global average pooling over the last feature map (a weak regulariser);
3. one dense layer to the class logits (the softmax lives in the loss and in :meth:`predict`).

Known trap: global average pooling throws away *where* a feature fired, and the stride-120
tiling makes the three convolutions (almost) translation equivariant, so a bare a-CNN cannot
tell a peak at 30 deg from the same peak at 60 deg. On about 130 COD materials it stalled near
45 % accuracy. Two switches restore position information without leaving the paper's design:

* ``position_channel=True`` (CoordConv, Liu et al. 2018) concatenates a normalised two-theta
  coordinate in ``[-1, 1]`` to the intensity as a second input channel, so the first layer can
  make its filters position dependent;
* ``pool_bins=B > 1`` keeps the three convolutions but averages over ``B`` equal two-theta
  windows instead of the whole range; the dense layer then sees ``filters * B`` features.

Both default to the paper (``False`` and ``1``). Class activation maps (Zhou et al. 2016) stay
exact for both: the class logit is the mean over feature positions of the map plus the bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xrdpipe.errors import ConfigError
from xrdpipe.models.inputs import pattern_channels, two_theta_coordinate

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
"""Activations the config accepts; paper 000 says ReLU in one place and "not a ReLU" in another."""


@dataclass(frozen=True)
class ACNNConfig:
    """Hyper-parameters of the a-CNN; the defaults are paper 000's network.

    Attributes:
        n_points: length of the input pattern (two-theta grid points).
        n_classes: number of classes (7 lattice systems; 230 for space groups).
        filters: filters of every convolution.
        kernels: kernel size of each convolution.
        strides: stride of each convolution (equal to the kernels in the paper).
        activation: one of :data:`ACTIVATIONS`.
        position_channel: append a normalised two-theta coordinate channel to the input.
        pool_bins: number of average-pooling windows before the dense layer (1 = global).
        dropout: dropout probability before the dense layer (0 = none, as in the paper).
    """

    n_points: int = 4501
    n_classes: int = 7
    filters: int = 32
    kernels: tuple[int, ...] = (8, 5, 3)
    strides: tuple[int, ...] = (8, 5, 3)
    activation: str = "relu"
    position_channel: bool = False
    pool_bins: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; store tuples so configs compare equal.
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        if len(self.kernels) != len(self.strides) or not self.kernels:
            raise ConfigError(
                f"ACNNConfig {self.kernels=} and {self.strides=} must be non-empty and of equal "
                "length (one kernel and one stride per convolution)"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"ACNNConfig {self.activation=} must be one of {sorted(ACTIVATIONS)}")
        if self.n_classes < 2 or self.filters < 1:
            raise ConfigError(f"ACNNConfig needs n_classes >= 2 and filters >= 1, got {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"ACNNConfig {self.dropout=} must be in [0, 1)")
        length = self.feature_length
        if length < self.pool_bins or self.pool_bins < 1:
            raise ConfigError(
                f"ACNNConfig {self.n_points=} gives a last feature map of {length} positions; "
                f"it must be >= pool_bins={self.pool_bins} >= 1"
            )

    @property
    def feature_length(self) -> int:
        """Length of the last convolution's feature map (valid convolutions, no padding)."""
        length = self.n_points
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            length = (length - kernel) // stride + 1
        return length

    @property
    def receptive_field(self) -> tuple[int, int]:
        """``(size, jump)`` in input points of one position of the last feature map."""
        size, jump = 1, 1
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            size += (kernel - 1) * jump
            jump *= stride
        return size, jump


class ACNN(nn.Module):
    """Paper 000's all-convolutional network; ``forward`` returns logits ``(B, n_classes)``."""

    def __init__(self, config: ACNNConfig) -> None:
        super().__init__()
        self.config = config
        in_channels = 2 if config.position_channel else 1
        layers: list[nn.Module] = []
        for kernel, stride in zip(config.kernels, config.strides, strict=True):
            layers += [
                nn.Conv1d(in_channels, config.filters, kernel, stride=stride),
                ACTIVATIONS[config.activation](),
            ]
            in_channels = config.filters
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(config.pool_bins)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.filters * config.pool_bins, config.n_classes)
        coordinate = two_theta_coordinate(config.n_points)
        self.register_buffer("two_theta_coordinate", coordinate, persistent=False)

    def _prepare(self, x: Tensor) -> Tensor:
        """Shape ``(B, n_points)`` or ``(B, 1, n_points)`` to the convolutions' input."""
        coordinate = self.two_theta_coordinate if self.config.position_channel else None
        return pattern_channels(x, self.config.n_points, coordinate, "a-CNN")

    def feature_maps(self, x: Tensor) -> Tensor:
        """The last convolution's activations, ``(B, filters, feature_length)``."""
        return self.features(self._prepare(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, n_classes)`` of patterns ``(B, n_points)`` or ``(B, 1, n_points)``."""
        pooled = self.pool(self.feature_maps(x)).flatten(1)
        return self.classifier(self.dropout(pooled))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Class probabilities ``(B, n_classes)`` (softmax of the logits)."""
        return torch.softmax(self(x).float(), dim=-1)


def _pooling_matrix(length: int, bins: int, device: torch.device) -> Tensor:
    """``(length, bins)`` matrix ``P`` with ``AdaptiveAvgPool1d(bins)(f) == f @ P``."""
    matrix = torch.zeros(length, bins, device=device)
    for b in range(bins):
        start = (b * length) // bins
        end = -((-(b + 1) * length) // bins)  # ceil, as in torch's adaptive pooling
        matrix[start:end, b] = 1.0 / (end - start)
    return matrix


def _upsample_to_input(cam: Tensor, config: ACNNConfig) -> Tensor:
    """Linear interpolation from receptive-field centres to every input point (ends held flat)."""
    size, jump = config.receptive_field
    length = cam.shape[-1]
    position = torch.arange(config.n_points, device=cam.device, dtype=torch.float32)
    index = ((position - (size - 1) / 2.0) / jump).clamp(0.0, length - 1.0)
    lower = index.floor().long()
    upper = (lower + 1).clamp(max=length - 1)
    weight = index - lower
    return cam[:, lower] * (1.0 - weight) + cam[:, upper] * weight


@torch.no_grad()
def class_activation_maps(
    model: ACNN, x: Tensor, class_index: Tensor | int | None = None, upsample: bool = True
) -> Tensor:
    """Class activation maps of an a-CNN, one per sample.

    With ``f_k(t)`` the last convolution's activations, ``w_{c,k,b}`` the dense weights of class
    ``c`` and ``P`` the pooling matrix (``1/L`` everywhere for global pooling), the map is
    ``CAM_c(t) = L * sum_b P[t, b] * sum_k w_{c,k,b} f_k(t)``, so that ``mean_t CAM_c(t) + bias_c``
    is exactly the logit of class ``c``. For ``pool_bins=1`` this is Zhou et al.'s CAM
    ``sum_k w_{c,k} f_k(t)``. The map is then linearly interpolated from the receptive-field
    centres of the feature positions to every two-theta point of the input.

    Args:
        model: a trained :class:`ACNN` (put in eval mode here and restored afterwards).
        x: patterns ``(B, n_points)`` or ``(B, 1, n_points)``.
        class_index: class per sample ``(B,)`` or one class for all; ``None`` = predicted class.
        upsample: interpolate to the input length; ``False`` returns ``(B, feature_length)``.

    Returns:
        ``(B, n_points)`` maps (``(B, feature_length)`` without upsampling), float32.
    """
    if not isinstance(model, ACNN):
        raise TypeError(f"{type(model)=} must be an ACNN: class activation maps need GAP + dense")
    was_training = model.training
    model.eval()
    try:
        features = model.feature_maps(x).float()  # (B, K, L)
        batch, filters, length = features.shape
        bins = model.config.pool_bins
        weight = model.classifier.weight.float().view(-1, filters, bins)  # (C, K, bins)
        if class_index is None:
            pooled = (features @ _pooling_matrix(length, bins, features.device)).flatten(1)
            class_index = model.classifier(pooled.to(model.classifier.weight.dtype)).argmax(-1)
        elif isinstance(class_index, int):
            class_index = torch.full((batch,), class_index, dtype=torch.long)
        class_index = class_index.to(features.device)
        assert class_index.shape == (batch,), (
            f"class_index must be ({batch},), got {class_index.shape}"
        )
        position_weight = length * _pooling_matrix(length, bins, features.device)  # (L, bins)
        # per sample and position: the dense weight of the chosen class that position feeds
        per_position = torch.einsum("bkn,ln->bkl", weight[class_index], position_weight)
        cam = (per_position * features).sum(dim=1)  # (B, L)
        return _upsample_to_input(cam, model.config) if upsample else cam
    finally:
        model.train(was_training)
