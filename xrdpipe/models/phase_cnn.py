"""The phase-fraction CNN of paper 002 (Höfer et al. 2024, table 1 and figure 2).

The network maps a mixed powder pattern to the phase fractions of ``N`` materials:

1. a convolutional stage of three blocks (table 1): block 1 = 64, 64, 128 filters, block 2 =
   256, 512, block 3 = 1024, 1024, 1024; every convolution has kernel 7, stride 1, no padding;
   max pooling (kernel = stride = 2) follows every layer of blocks 1 and 2 and the first of
   block 3;
2. after each block a copy of its output goes through a reduction layer: R1 (4 filters,
   kernel 9, pooled) after block 1, R2 (20 filters, kernel 5, pooled) after block 2, R3 (64
   filters, kernel 4, not pooled) after block 3;
3. the three flattened reductions are concatenated (as in HS-ResNet) and go through a fully
   connected stage whose last layer has one output per material.

Batch normalisation precedes every layer but the first convolution (reduction and fully
connected layers included); every layer but the last is followed by a leaky ReLU of negative
slope 0.01. The paper's last layer is a softmax; here ``forward`` returns logits and the softmax
is applied by the loss (:class:`xrdpipe.training.losses.TVDLoss`) and by :meth:`predict`, which
is the same function, computed more stably under bf16 autocast.

The paper does not give the fully connected sizes, only "about 30e6 parameters" in total. The
convolutions hold 19.9 M; hidden layers of 1536 and 1024 units bring the total to 30.0 M at
``n_points=4501``. ``width`` multiplies every filter count and hidden size (``width=0.22``
gives about 1.5 M parameters) for quick experiments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xrdpipe.errors import ConfigError

Layer = tuple[int, int, bool]
"""``(filters, kernel_size, max_pool)`` of one convolution, as a row of table 1."""

TABLE_1_BLOCKS: tuple[tuple[Layer, ...], ...] = (
    ((64, 7, True), (64, 7, True), (128, 7, True)),
    ((256, 7, True), (512, 7, True)),
    ((1024, 7, True), (1024, 7, False), (1024, 7, False)),
)
"""Paper 002, table 1: the convolutional blocks."""

TABLE_1_REDUCTIONS: tuple[Layer, ...] = ((4, 9, True), (20, 5, True), (64, 4, False))
"""Paper 002, table 1: reduction layers R1-R3, one after each block."""

POOL = 2
"""Max-pooling kernel and stride (paper 002, section 2)."""


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _as_layers(rows: object) -> tuple[Layer, ...]:
    return tuple((int(f), int(k), bool(p)) for f, k, p in rows)  # type: ignore[union-attr]


@dataclass(frozen=True)
class PhaseCNNConfig:
    """Hyper-parameters of the phase-fraction CNN; the defaults are paper 002's network.

    Attributes:
        n_points: length of the input pattern (two-theta grid points).
        n_materials: number of outputs ``N`` (materials of the pool).
        width: multiplier on every filter count and hidden fully connected size.
        fc_sizes: hidden fully connected sizes at ``width=1`` (the paper does not give them).
        negative_slope: slope of the leaky ReLU for negative inputs.
        dropout: dropout probability after each hidden fully connected layer (paper: none).
        blocks: the convolutional blocks, rows ``(filters, kernel, pool)`` (table 1).
        reductions: the reduction layers R1..R3, one per block (table 1).
    """

    n_points: int = 4501
    n_materials: int = 5
    width: float = 1.0
    fc_sizes: tuple[int, ...] = (1536, 1024)
    negative_slope: float = 0.01
    dropout: float = 0.0
    blocks: tuple[tuple[Layer, ...], ...] = TABLE_1_BLOCKS
    reductions: tuple[Layer, ...] = TABLE_1_REDUCTIONS

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; store tuples so configs compare equal.
        object.__setattr__(self, "fc_sizes", tuple(int(s) for s in self.fc_sizes))
        object.__setattr__(self, "blocks", tuple(_as_layers(b) for b in self.blocks))
        object.__setattr__(self, "reductions", _as_layers(self.reductions))
        if len(self.reductions) != len(self.blocks):
            raise ConfigError(
                f"PhaseCNNConfig has {len(self.blocks)} blocks but {len(self.reductions)} "
                "reductions; table 1 attaches one reduction layer to each block"
            )
        if self.n_materials < 2 or self.width <= 0:
            raise ConfigError(
                f"PhaseCNNConfig needs n_materials >= 2 and width > 0, got "
                f"{self.n_materials=}, {self.width=}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"PhaseCNNConfig {self.dropout=} must be in [0, 1)")
        shapes = self.layer_shapes()
        too_short = [name for name, _, length in shapes if length < 1]
        if too_short:
            raise ConfigError(
                f"PhaseCNNConfig {self.n_points=} is too short: {too_short[0]} would have no "
                f"output positions; n_points must be >= {self.min_n_points()}"
            )

    def layer_shapes(self) -> list[tuple[str, int, int]]:
        """``(name, channels, length)`` after every convolution (pooling included), in order."""
        shapes: list[tuple[str, int, int]] = []
        length = self.n_points
        for b, (block, reduction) in enumerate(zip(self.blocks, self.reductions, strict=True)):
            for i, (filters, kernel, pool) in enumerate(block):
                length = length - kernel + 1
                length = length // POOL if pool else length
                shapes.append((f"block{b + 1}.{i}", _scaled(filters, self.width), length))
            filters, kernel, pool = reduction
            r_length = length - kernel + 1
            r_length = r_length // POOL if pool else r_length
            shapes.append((f"reduce{b + 1}", _scaled(filters, self.width), r_length))
        return shapes

    @property
    def flat_features(self) -> int:
        """Length of the concatenated, flattened R1..R3 outputs (input of the FC stage)."""
        return sum(c * n for name, c, n in self.layer_shapes() if name.startswith("reduce"))

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Hidden fully connected sizes after the width multiplier."""
        return tuple(_scaled(s, self.width) for s in self.fc_sizes)

    def min_n_points(self) -> int:
        """Smallest ``n_points`` for which every layer keeps at least one position."""
        low, high = 1, 1
        while not self._long_enough(high):
            low, high = high, high * 2
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if self._long_enough(mid) else (mid + 1, high)
        return high

    def _long_enough(self, n_points: int) -> bool:
        length = n_points
        for block, (_, r_kernel, r_pool) in zip(self.blocks, self.reductions, strict=True):
            for _, kernel, pool in block:
                length = (length - kernel + 1) // (POOL if pool else 1)
                if length < 1:
                    return False
            if (length - r_kernel + 1) // (POOL if r_pool else 1) < 1:
                return False
        return True


class ConvLayer(nn.Sequential):
    """``[BatchNorm] -> Conv1d (stride 1, no padding) -> LeakyReLU -> [MaxPool 2]``."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, pool: bool, norm: bool, negative_slope: float
    ) -> None:
        super().__init__()
        if norm:
            self.norm = nn.BatchNorm1d(c_in)
        self.conv = nn.Conv1d(c_in, c_out, kernel)
        self.act = nn.LeakyReLU(negative_slope)
        if pool:
            self.pool = nn.MaxPool1d(POOL)


class PhaseCNN(nn.Module):
    """Paper 002's network; ``forward`` returns logits ``(B, n_materials)``."""

    def __init__(self, config: PhaseCNNConfig) -> None:
        super().__init__()
        self.config = config
        slope = config.negative_slope
        self.blocks = nn.ModuleList()
        self.reductions = nn.ModuleList()
        c_in, first = 1, True
        for block, (r_filters, r_kernel, r_pool) in zip(
            config.blocks, config.reductions, strict=True
        ):
            layers = []
            for filters, kernel, pool in block:
                c_out = _scaled(filters, config.width)
                layers.append(ConvLayer(c_in, c_out, kernel, pool, not first, slope))
                c_in, first = c_out, False
            self.blocks.append(nn.Sequential(*layers))
            r_out = _scaled(r_filters, config.width)
            self.reductions.append(ConvLayer(c_in, r_out, r_kernel, r_pool, True, slope))
        head: list[nn.Module] = []
        n_in = config.flat_features
        for size in config.hidden_sizes:
            head += [nn.BatchNorm1d(n_in), nn.Linear(n_in, size), nn.LeakyReLU(slope)]
            if config.dropout > 0:
                head.append(nn.Dropout(config.dropout))
            n_in = size
        head += [nn.BatchNorm1d(n_in), nn.Linear(n_in, config.n_materials)]
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_materials)`` of patterns ``(B, n_points)`` (or ``(B, 1, n_points)``)."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        assert x.dim() == 3 and x.shape[1:] == (1, self.config.n_points), (
            f"PhaseCNN expects (B, {self.config.n_points}) or (B, 1, {self.config.n_points}), "
            f"got {tuple(x.shape)}"
        )
        reduced = []
        for block, reduction in zip(self.blocks, self.reductions, strict=True):
            x = block(x)
            reduced.append(reduction(x).flatten(1))
        features = torch.cat(reduced, dim=1)
        assert features.shape[1] == self.config.flat_features, (
            f"concatenated reductions have {features.shape[1]} features, "
            f"expected {self.config.flat_features}"
        )
        return self.head(features)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Phase fractions ``(B, n_materials)``: the softmax of the logits, summing to one."""
        return torch.softmax(self(x).float(), dim=-1)
