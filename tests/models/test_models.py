"""The a-CNN (paper 000) and the phase-fraction CNN (paper 002): shapes, sizes, CAMs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xrdpipe.errors import ConfigError
from xrdpipe.models import (
    ACNN,
    ACNNConfig,
    PhaseCNN,
    PhaseCNNConfig,
    build_model,
    class_activation_maps,
    config_from_dict,
    config_to_dict,
    count_parameters,
)
from xrdpipe.models.phase_cnn import ConvLayer

pytestmark = pytest.mark.usefixtures("one_thread")


# Table 1 of paper 002 at n_points = 4501, worked out by hand: valid convolutions shorten by
# kernel - 1, max pooling halves (floor).
TABLE_1_SHAPES = [
    ("block1.0", 64, 2247),  # (4501 - 6) // 2
    ("block1.1", 64, 1120),  # (2247 - 6) // 2
    ("block1.2", 128, 557),  # (1120 - 6) // 2
    ("reduce1", 4, 274),  # (557 - 8) // 2
    ("block2.0", 256, 275),  # (557 - 6) // 2
    ("block2.1", 512, 134),  # (275 - 6) // 2
    ("reduce2", 20, 65),  # (134 - 4) // 2
    ("block3.0", 1024, 64),  # (134 - 6) // 2
    ("block3.1", 1024, 58),
    ("block3.2", 1024, 52),
    ("reduce3", 64, 49),  # 52 - 3
]
TABLE_1_KERNELS = [7, 7, 7, 9, 7, 7, 5, 7, 7, 7, 4]


def _conv_layers_in_order(model: PhaseCNN) -> list[tuple[str, ConvLayer]]:
    layers = []
    for b, (block, reduction) in enumerate(zip(model.blocks, model.reductions, strict=True)):
        layers += [(f"block{b + 1}.{i}", layer) for i, layer in enumerate(block)]
        layers.append((f"reduce{b + 1}", reduction))
    return layers


def test_phase_cnn_full_width_matches_table_1_and_has_about_30m_parameters():
    torch.manual_seed(0)
    model = PhaseCNN(PhaseCNNConfig(n_points=4501, n_materials=10)).eval()
    n_params = count_parameters(model)
    assert 25e6 <= n_params <= 35e6, n_params
    # the convolutions alone, from table 1: c_in * c_out * k + c_out per layer
    channels = [1, 64, 64, 128, 256, 512, 1024, 1024, 1024]
    conv = sum(a * b * 7 + b for a, b in zip(channels[:-1], channels[1:], strict=True))
    conv += 128 * 4 * 9 + 4 + 512 * 20 * 5 + 20 + 1024 * 64 * 4 + 64
    conv_params = sum(
        p.numel() for _, layer in _conv_layers_in_order(model) for p in layer.conv.parameters()
    )
    assert conv_params == conv == 19_905_560

    shapes: dict[str, tuple[int, ...]] = {}
    layers = _conv_layers_in_order(model)
    for name, layer in layers:
        layer.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape))
    with torch.no_grad():
        out = model(torch.rand(1, 4501))
    assert out.shape == (1, 10)
    assert [(n, s[1], s[2]) for n, s in shapes.items()] == TABLE_1_SHAPES
    assert model.config.layer_shapes() == TABLE_1_SHAPES
    assert model.config.flat_features == 4 * 274 + 20 * 65 + 64 * 49
    assert [layer.conv.kernel_size[0] for _, layer in layers] == TABLE_1_KERNELS
    assert all(layer.conv.stride == (1,) and layer.conv.padding == (0,) for _, layer in layers)
    # batch norm before every layer but the first; max pooling where table 1 says
    assert [hasattr(layer, "norm") for _, layer in layers] == [False] + [True] * 10
    pooled = [hasattr(layer, "pool") for _, layer in layers]
    assert pooled == [True, True, True, True, True, True, True, True, False, False, False]
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.01}
    assert isinstance(model.head[-1], nn.Linear) and isinstance(model.head[-2], nn.BatchNorm1d)
    fractions = model.predict(torch.rand(2, 4501))
    assert torch.allclose(fractions.sum(-1), torch.ones(2))


def test_phase_cnn_width_scales_the_parameter_count():
    small = PhaseCNN(PhaseCNNConfig(width=0.22))
    assert 1.3e6 < count_parameters(small) < 1.7e6
    assert small.blocks[0][0].conv.out_channels == 14
    assert small.config.hidden_sizes == (338, 225)


def test_phase_cnn_rejects_patterns_too_short_for_table_1():
    assert PhaseCNNConfig().min_n_points() == 1402
    PhaseCNNConfig(n_points=1402)
    with pytest.raises(ConfigError, match="n_points must be >= 1402"):
        PhaseCNNConfig(n_points=1401)


def test_acnn_is_paper_000_sized_and_shaped():
    model = ACNN(ACNNConfig())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (32, 8, 8),
        (32, 5, 5),
        (32, 3, 3),
    ]
    assert model.config.feature_length == 37  # 4501 -> 562 -> 112 -> 37
    assert count_parameters(model) == (8 * 32 + 32) + (32 * 32 * 5 + 32) + (32 * 32 * 3 + 32) + (
        32 * 7 + 7
    )
    x = torch.rand(3, 4501)
    assert model(x).shape == (3, 7)
    assert torch.equal(model(x), model(x.unsqueeze(1)))
    assert model.feature_maps(x).shape == (3, 32, 37)
    with pytest.raises(AssertionError, match="a-CNN expects"):
        model(torch.rand(3, 4500))

    coord = ACNN(ACNNConfig(position_channel=True, pool_bins=4, n_classes=230))
    assert coord.features[0].in_channels == 2
    assert coord.classifier.in_features == 32 * 4
    assert coord(x).shape == (3, 230)
    assert "two_theta_coordinate" not in coord.state_dict()


@pytest.mark.parametrize("pool_bins", [1, 5])
def test_cam_is_an_exact_decomposition_of_the_logit(pool_bins):
    torch.manual_seed(1)
    model = ACNN(ACNNConfig(n_points=1200, n_classes=4, pool_bins=pool_bins))
    x = torch.rand(3, 1200)
    logits = model(x)
    cam = class_activation_maps(model, x, class_index=2, upsample=False)
    assert cam.shape == (3, model.config.feature_length)
    expected = logits[:, 2] - model.classifier.bias[2]
    assert torch.allclose(cam.mean(-1), expected, atol=1e-5)
    full = class_activation_maps(model, x)
    assert full.shape == (3, 1200)
    predicted = logits.argmax(-1)
    assert torch.allclose(full, class_activation_maps(model, x, class_index=predicted))


def _peak_patterns(
    n: int, n_points: int, centers: list[int], labels: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Noise plus a Gaussian peak (sigma 4 points) at ``centers[label]`` (none for -1)."""
    grid = torch.arange(n_points, dtype=torch.float32)
    center = torch.tensor(centers, dtype=torch.float32)[labels.clamp(min=0)].unsqueeze(1)
    peaks = torch.exp(-0.5 * ((grid - center) / 4.0) ** 2) * (labels >= 0).unsqueeze(1)
    return 0.05 * torch.rand(n, n_points, generator=gen) + peaks


def _fit(model: nn.Module, make_batch, steps: int, lr: float = 3e-3) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        x, y = make_batch(step)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_cam_highlights_a_planted_peak():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n_points, peak = 1200, 660

    def batch(_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (32,), generator=gen)
        return _peak_patterns(32, n_points, [peak, peak], torch.where(y == 1, 1, -1), gen), y

    model = ACNN(ACNNConfig(n_points=n_points, n_classes=2))
    _fit(model, batch, steps=60)
    x, y = batch(0)
    assert (model(x).argmax(-1) == y).float().mean() > 0.9
    cam = class_activation_maps(model, x[y == 1], class_index=1)
    assert cam.shape == (int((y == 1).sum()), n_points)
    assert ((cam.argmax(-1) - peak).abs() <= 60).all(), cam.argmax(-1)


@pytest.mark.parametrize(
    ("options", "learns"),
    [({}, False), ({"position_channel": True}, True), ({"pool_bins": 4}, True)],
)
def test_position_variants_tell_apart_a_peak_that_global_pooling_cannot(options, learns):
    # 300 and 780 sit at the same offset in the a-CNN's 120-point tiling: after global average
    # pooling the two classes give identical feature distributions.
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)

    def batch(_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 2, (64,), generator=gen)
        return _peak_patterns(64, 1200, [300, 780], y, gen), y

    model = ACNN(ACNNConfig(n_points=1200, n_classes=2, **options))
    _fit(model, batch, steps=80, lr=1e-2)
    x, y = batch(0)
    accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert (accuracy > 0.9) if learns else (accuracy < 0.75), accuracy


@pytest.mark.parametrize(
    "config",
    [ACNNConfig(position_channel=True, kernels=(8, 5), strides=(8, 5)), PhaseCNNConfig(width=0.1)],
)
def test_config_round_trips_through_json(config):
    name = "acnn" if isinstance(config, ACNNConfig) else "phase_cnn"
    restored = config_from_dict(name, json.loads(json.dumps(config_to_dict(config))))
    assert restored == config
    assert type(build_model(restored)) is (ACNN if name == "acnn" else PhaseCNN)
    with pytest.raises(ConfigError, match="no fields"):
        config_from_dict(name, {**config_to_dict(config), "bogus": 1})


def test_bad_configs_name_the_value():
    with pytest.raises(ConfigError, match="activation"):
        ACNNConfig(activation="swish")
    with pytest.raises(ConfigError, match="pool_bins"):
        ACNNConfig(n_points=200, pool_bins=4)
