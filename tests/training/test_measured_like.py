"""Measured-like classifier training, the 1D ResNet, and the predictor that prepares as training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.training.sampling import GRID, PLAIN, TINY_RENDER, WAVELENGTH, tiny_measured_like
from xrdpipe.config import ClassifierPreset, SubsetConfig
from xrdpipe.errors import ConfigError
from xrdpipe.models import ResNet1D, ResNet1DConfig, count_parameters
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.training.measured_like import (
    MeasuredLikeSampler,
    strongest_peaks,
    top_k_accuracy,
)


def test_strongest_peaks_keeps_the_strongest_in_their_order():
    intensity = np.array([[[5.0, 100.0, 1.0, 30.0, 0.0]]])
    arrays = {
        "two_theta": np.array([[[10.0, 20.0, 30.0, 40.0, 0.0]]]),
        "intensity": intensity,
        "peak_mask": np.array([[[True, True, True, True, False]]]),
        "hkl": np.arange(15, dtype=float).reshape(1, 1, 5, 3),
    }
    kept = strongest_peaks(arrays, 3)
    assert kept["two_theta"].tolist() == [[[10.0, 20.0, 40.0]]]
    assert kept["intensity"].tolist() == [[[5.0, 100.0, 30.0]]]
    assert kept["hkl"][0, 0, 2].tolist() == [9.0, 10.0, 11.0]
    assert strongest_peaks(arrays, 5) is arrays


def test_top_k_accuracy_matches_scikit_learn():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 9))
    y = rng.integers(0, 9, 200)
    for k in (1, 3, 5):
        expected = top_k_accuracy_score(y, logits, k=k, labels=list(range(9)))
        assert top_k_accuracy(logits, y, k) == pytest.approx(expected)


def one_peak(d_spacing: float) -> PeakArrays:
    two_theta = math.degrees(2 * math.asin(WAVELENGTH / (2 * d_spacing)))
    return PeakArrays.from_arrays(
        np.array([[[two_theta]]]),
        np.array([[[100.0]]]),
        np.array([[[True]]]),
        d_spacing=np.array([[[d_spacing]]]),
    )


def test_isotropic_strain_moves_the_peak_along_bragg_and_draws_are_seeded():
    d = 2.0
    bragg = math.degrees(2 * math.asin(WAVELENGTH / (2 * d)))  # 45.3054 deg
    grid = GRID
    still = MeasuredLikeSampler(one_peak(d), PLAIN, 0.0, WAVELENGTH, seed=1)
    x, material = still.sample(4)
    assert material.tolist() == [0, 0, 0, 0]
    assert np.abs(grid[x.numpy().argmax(axis=1)] - bragg).max() <= 0.01

    bound = 0.03
    strained = MeasuredLikeSampler(one_peak(d), PLAIN, bound, WAVELENGTH, seed=1)
    x, _ = strained.sample(64)
    peaks = grid[x.numpy().argmax(axis=1)]
    low = math.degrees(2 * math.asin(WAVELENGTH / (2 * d * (1 + bound))))  # 43.95 deg
    high = math.degrees(2 * math.asin(WAVELENGTH / (2 * d * (1 - bound))))  # 46.74 deg
    assert low - 0.01 <= peaks.min() < bragg < peaks.max() <= high + 0.01
    assert peaks.max() - peaks.min() > 0.5 * (high - low)

    strained.reseed(7)
    first, _ = strained.sample(8)
    strained.reseed(7)
    again, _ = strained.sample(8)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert float(first.min()) == 0.0 and float(first.max()) == 1.0


def test_the_resnet_has_the_parameters_of_its_blocks():
    cfg = ResNet1DConfig(n_points=256, n_classes=5, widths=(4, 8), blocks=1, kernel=3,
                         stem_kernel=5, position_channel=True)  # fmt: skip
    stem = 2 * 4 * 5 + 2 * 4
    block1 = 4 * 4 * 3 + 2 * 4 + 4 * 4 * 3 + 2 * 4  # identity shortcut
    block2 = 4 * 8 * 3 + 2 * 8 + 8 * 8 * 3 + 2 * 8 + (4 * 8 + 2 * 8)  # strided 1x1 shortcut
    head = 8 * 5 + 5
    model = ResNet1D(cfg)
    assert count_parameters(model) == stem + block1 + block2 + head
    assert model(torch.rand(3, 256)).shape == (3, 5)
    with pytest.raises(ConfigError, match="must be odd"):
        ResNet1DConfig(kernel=4)


def test_resnet_trains_only_on_measured_like_patterns():
    from xrdpipe.training.classifier import train_classifier

    preset = ClassifierPreset(model={"architecture": "resnet1d"})
    with pytest.raises(ConfigError, match="measured_like"):
        train_classifier("nowhere.zarr", SubsetConfig(), preset)
    # presets that leave the new fields alone dump as before (training identities hold)
    dumped = ClassifierPreset().model_dump()
    assert set(dumped["model"]) == {"variants", "pool_bins"}
    assert set(dumped["data"]) == {"loss", "augment", "augmentation"}


def test_measured_like_training_and_the_predictor(tiny_synthetic_store, tmp_path):
    from xrdpipe.models.checkpoints import save_checkpoint
    from xrdpipe.readers.base import MeasuredPattern
    from xrdpipe.training.classifier import train_classifier
    from xrdpipe.training.classifier_inference import ClassifierPredictor

    store_path, subset = tiny_synthetic_store
    render = TINY_RENDER
    preset = tiny_measured_like()
    result = train_classifier(store_path, subset, preset, "crystal_system", progress=False)
    metrics = result.metrics()
    assert 0.0 <= metrics["test_accuracy"] <= metrics["test_top5_accuracy"] <= 1.0
    assert result.primary.variant == "resnet1d"
    assert result.config["preprocess"]["n_points"] == 701
    assert result.config["preprocess"]["wavelength"] == render.ka1  # the doublet's K-alpha1
    test_ids = set(result.config["data"]["test_materials"])
    assert len(test_ids) >= 2 and result.input_example.shape == (2, 701)
    # temperature and flag rule fitted on validation, stored for predict (config and checkpoint)
    calibration = result.config["calibration"]
    assert calibration == result.extra["checkpoint_metadata"]["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20.0
    assert set(calibration["flag_rule"]["thresholds"]) == {
        "sharpness",
        "n_peaks",
        "max_probability",
    }
    assert calibration["flag_rule"]["n_validation"] == result.config["data"]["n_validation"]

    path = save_checkpoint(
        tmp_path / "model", result.model, metadata=result.extra["checkpoint_metadata"]
    )
    predictor = ClassifierPredictor.load(path)
    assert predictor.classes == result.class_names
    assert predictor.target == "crystal_system"
    assert (predictor.grid.n_points, predictor.grid.ka_doublet) == (701, True)
    assert predictor.background is False  # trained with backgrounds: none subtracted
    with torch.no_grad():
        direct = result.model(torch.from_numpy(result.input_example)).numpy()
    np.testing.assert_allclose(predictor.logits(result.input_example), direct, atol=1e-5)

    # a scan on the model's own grid and wavelength, in counts with an offset, prepares to the
    # rendered profile (min-max), so the predictor sees exactly what training rendered
    profile = result.input_example[0]
    scan = MeasuredPattern(
        source="rendered",
        two_theta=np.linspace(10.0, 80.0, 701),
        intensity=50.0 + 1000.0 * profile.astype(float),
        ka1=render.ka1,
        ka2=render.ka2,
        ka2_ratio=render.ka2_ratio,
        wavelength_source="file",
    )
    np.testing.assert_allclose(predictor.prepare(scan), profile, atol=1e-6)


def test_the_catalog_presets_render_the_lab_scan():
    from xrdpipe.config import load_catalog
    from xrdpipe.training.measured_like import LAB_SCAN_PROFILE

    presets = load_catalog().presets.classifier
    gpu, cpu = presets["synthetic-gpu"], presets["synthetic-cpu"]
    assert gpu.data.render == LAB_SCAN_PROFILE
    assert cpu.data.render == LAB_SCAN_PROFILE.model_copy(update={"n_points": 1751})
    assert cpu.model.architecture == gpu.model.architecture == "resnet1d"
    assert cpu.train.max_minutes is not None and cpu.train.max_minutes <= 55
    assert gpu.data.epoch_size * gpu.train.epochs > 10**8
