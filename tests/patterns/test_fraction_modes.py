"""The mixture fraction modes: ``intensity`` (paper 002) and ``weight``; ``volume`` is an alias."""

from __future__ import annotations

import pytest
import torch

from xrdpipe.errors import ConfigError
from xrdpipe.patterns import MixtureConfig, mixture_intensities


def test_intensity_mode_scales_each_max_100_peak_list_by_its_fraction():
    intensity = torch.tensor([[[100.0, 50.0], [100.0, 20.0]]])  # (1, K=2, P=2)
    fractions = torch.tensor([[0.25, 0.75]])
    out = mixture_intensities(intensity, fractions, "intensity")
    # by hand: 0.25 * [100, 50] and 0.75 * [100, 20]
    assert out.tolist() == [[[25.0, 12.5], [75.0, 15.0]]]
    assert MixtureConfig().fraction_mode == "intensity"


def test_volume_is_a_deprecated_alias_of_intensity():
    intensity = torch.tensor([[[100.0, 40.0]]])
    fractions = torch.tensor([[0.5]])
    with pytest.warns(DeprecationWarning, match="'volume' is deprecated.*'intensity'"):
        out = mixture_intensities(intensity, fractions, "volume")  # type: ignore[arg-type]
    assert out.tolist() == [[[50.0, 20.0]]]
    with pytest.warns(DeprecationWarning, match="fraction_mode: intensity"):
        cfg = MixtureConfig(fraction_mode="volume")  # type: ignore[arg-type]
    assert cfg.fraction_mode == "intensity"


def test_an_unknown_mode_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"'area'.*\['intensity', 'weight'\]"):
        mixture_intensities(torch.ones(1, 1, 1), torch.ones(1, 1), "area")  # type: ignore[arg-type]
