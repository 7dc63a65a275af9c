"""The mixture detector of the one-phase flag: its draws, labels, training, storage, attach."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.training.sampling import GRID, PLAIN, WAVELENGTH, tiny_measured_like
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.training.measured_like import (
    FLAG_TESTS_WITH_DETECTOR,
    NO_PEAK_SHARPNESS,
    MeasuredLikeSampler,
)
from xrdpipe.training.mixture_detector import (
    MAX_REPEATS,
    line_count_pool,
    load_detector,
    mixture_labels,
    mixture_probability,
    save_detector,
    strong_line_counts,
)

D_SPACINGS = (2.6, 2.0, 1.7)  # one line each: 34.47, 45.31, 53.89 deg


def test_labels_leave_out_mixtures_with_a_small_minor_phase():
    n_phases = torch.tensor([1, 2, 2, 3, 3])
    minor = torch.tensor([1.0, 0.3, 0.05, 0.1, 0.099])
    labels, keep = mixture_labels(n_phases, minor, 0.1)
    assert labels.tolist() == [0, 1, 1, 1, 1]
    assert keep.tolist() == [True, True, False, True, False]


def three_lines() -> PeakArrays:
    """Three materials of one line each (no two at the same angle)."""
    d = np.array(D_SPACINGS)[:, None, None]
    tt = np.degrees(2 * np.arcsin(WAVELENGTH / (2 * d)))
    return PeakArrays.from_arrays(tt, np.full_like(tt, 100.0), np.ones_like(tt, bool), d_spacing=d)


def test_mixture_draws_hold_each_phase_line_once_and_are_seeded():
    sampler = MeasuredLikeSampler(three_lines(), PLAIN, 0.0, WAVELENGTH, seed=3, max_phases=3)
    x, n_phases, minor = sampler.sample_mixtures(96)
    grid = GRID
    lines = [math.degrees(2 * math.asin(WAVELENGTH / (2 * d))) for d in D_SPACINGS]
    at_lines = np.stack([x.numpy()[:, np.abs(grid - t).argmin()] for t in lines], axis=1)
    assert set(n_phases.tolist()) == {1, 2, 3}
    # distinct materials: a pattern shows exactly as many lines as it has phases (a phase
    # of intensity fraction f has a line of height ~f relative to the strongest)
    visible = (at_lines > 0.2 * minor.numpy()[:, None]).sum(axis=1)
    np.testing.assert_array_equal(visible, n_phases.numpy())
    assert torch.all(minor[n_phases == 1] == 1.0) and torch.all(minor[n_phases > 1] < 0.5 + 1e-6)
    sampler.reseed(5)
    first = sampler.sample_mixtures(8)
    sampler.reseed(5)
    again = sampler.sample_mixtures(8)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_strong_lines_are_counted_inside_the_grid_at_one_percent_of_the_strongest():
    # material 0: 100, 50, 1 (at the share), 0.9 (below), one line outside 20-60 deg;
    # material 1: one line; material 2: two lines, the second padding
    tt = np.array([[30.0, 35.0, 40.0, 45.0, 70.0], [25.0, 0, 0, 0, 0], [50.0, 55.0, 0, 0, 0]])
    intensity = np.array([[100, 50, 1.0, 0.9, 500], [7, 0, 0, 0, 0], [3, 3, 9, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=bool)
    peaks = PeakArrays.from_arrays(tt[:, None], intensity[:, None], mask[:, None])
    assert strong_line_counts(peaks, PLAIN).tolist() == [3, 1, 2]


def test_the_line_count_pool_weighs_each_octave_alike_up_to_the_cap():
    # octaves: 1 line (1 material), 2-3 (2), 4-7 (4), 32-63 (8)
    counts = np.array([1, 2, 3, 4, 5, 6, 7] + [40] * 8)
    pool = line_count_pool(counts, np.arange(15))
    repeats = np.bincount(pool, minlength=15)
    assert repeats.tolist() == [8, 4, 4, 2, 2, 2, 2] + [1] * 8  # round(8 / n) each
    assert np.all(np.diff(pool) >= 0)  # order kept
    octave_weight = [repeats[:1].sum(), repeats[1:3].sum(), repeats[3:7].sum(), repeats[7:].sum()]
    assert octave_weight == [8, 8, 8, 8]
    # a rare octave is capped; only the given indices are pooled; no line counts as one
    counts = np.array([0] + [100] * 30)
    assert np.bincount(line_count_pool(counts, np.arange(31)))[0] == MAX_REPEATS
    assert line_count_pool(counts, np.array([3, 5])).tolist() == [3, 5]
    assert line_count_pool(counts, np.array([], dtype=int)).size == 0


def test_balance_line_counts_dumps_only_when_set():
    from xrdpipe.config.presets import MixtureDetectorSettings

    # detectors trained before the option keep their recorded settings (and identities)
    assert MixtureDetectorSettings().model_dump() == {
        "max_minutes": 10.0, "max_phases": 3, "min_fraction": 0.1,
    }  # fmt: skip
    assert MixtureDetectorSettings(balance_line_counts=True).model_dump()["balance_line_counts"]
    assert MixtureDetectorSettings(cpu_bf16=True).model_dump()["cpu_bf16"]


def test_cpu_bf16_dumps_only_when_set_and_reaches_the_loop():
    from xrdpipe.config.presets import ClassifierPreset, LoopSettings
    from xrdpipe.training.classifier import classifier_train_config

    # presets logged before the option keep their parameters (and training identities)
    assert "cpu_bf16" not in LoopSettings().model_dump()
    assert LoopSettings(cpu_bf16=True).model_dump()["cpu_bf16"] is True
    assert "cpu_bf16" not in ClassifierPreset().model_dump()["train"]
    on = ClassifierPreset().model_copy(update={"cpu_bf16": True})  # routed to train
    assert classifier_train_config(on, 0, "cpu").cpu_bf16
    assert not classifier_train_config(ClassifierPreset(), 0, "cpu").cpu_bf16


def test_one_phase_sampler_keeps_its_draws():
    """max_phases 1 (the classifier's sampler) draws what it drew before mixtures existed
    (materials and line positions of seed 1 recorded with the sampler of 422ab02), each
    pattern one line at its Bragg angle, strained within bounds."""
    one = MeasuredLikeSampler(three_lines(), PLAIN, 0.02, WAVELENGTH, seed=1)
    x, material = one.sample(32)
    assert material[:8].tolist() == [0, 0, 1, 0, 2, 0, 2, 2]
    assert x.argmax(dim=1)[:8].tolist() == [1472, 1474, 2470, 1396, 3279, 1426, 3333, 3398]
    assert one.mixtures.cfg.phase_draw == "pool"
    grid = GRID
    for pattern, m in zip(x.numpy(), material.tolist(), strict=True):
        d = D_SPACINGS[m]
        low = math.degrees(2 * math.asin(WAVELENGTH / (2 * d * 1.02)))
        high = math.degrees(2 * math.asin(WAVELENGTH / (2 * d * 0.98)))
        assert low - 0.02 <= grid[pattern.argmax()] <= high + 0.02
        assert (pattern > 0.5).sum() < 20  # one line only


def test_training_stores_the_detector_beside_the_classifier_through_mlflow(
    tiny_synthetic_store, tmp_path
):
    import mlflow

    from xrdpipe import tracking
    from xrdpipe.training.classifier import train_classifier
    from xrdpipe.training.classifier_inference import ClassifierPredictor

    store_path, subset = tiny_synthetic_store
    result = train_classifier(
        store_path, subset, tiny_measured_like(2, detector=True), "crystal_system", progress=False
    )
    calibration = result.config["calibration"]
    assert set(calibration["flag_rule"]["thresholds"]) == set(FLAG_TESTS_WITH_DETECTOR)
    assert 0.0 <= calibration["flag_rule"]["thresholds"]["mixture"] <= 1.0
    assert calibration["flag_rule"]["thresholds"]["sharpness"] <= NO_PEAK_SHARPNESS
    detector = result.extra["mixture_detector"]
    x = result.input_example
    p = mixture_probability(detector.model, x)
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
    assert result.metrics()["mixture_detector_val_auc"] == detector.validation_auc

    tracking.configure(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path / "art")
    try:
        with tracking.training_run("crystal-system") as run:
            tracking.log_classifier(result, None)
        _, _, sidecar = tracking.model_metadata(run.run_id)
    finally:
        mlflow.set_tracking_uri("")
    np.testing.assert_allclose(mixture_probability(sidecar["mixture_detector"], x), p, atol=1e-6)

    # a file checkpoint: the detector beside it is found by the predictor
    from xrdpipe.models.checkpoints import save_checkpoint

    path = save_checkpoint(
        tmp_path / "model", result.model, metadata=result.extra["checkpoint_metadata"]
    )
    assert ClassifierPredictor.load(path).detector is None
    weights = save_detector(path, detector.model, {"task": "crystal_system"})
    assert weights == tmp_path / "model-mixture.safetensors"
    loaded = ClassifierPredictor.load(path).detector
    np.testing.assert_allclose(mixture_probability(loaded, x), p, atol=1e-6)


def test_attach_gives_an_older_classifier_a_detector_and_keeps_its_weights(
    tiny_synthetic_store, tmp_path
):
    from xrdpipe.models.checkpoints import read_metadata, save_checkpoint
    from xrdpipe.training.classifier import train_classifier
    from xrdpipe.training.classifier_inference import ClassifierPredictor
    from xrdpipe.training.labels import TaskError
    from xrdpipe.training.mixture_detector import attach_detector

    store_path, subset = tiny_synthetic_store
    result = train_classifier(
        store_path, subset, tiny_measured_like(2), "crystal_system", progress=False
    )
    before = result.extra["checkpoint_metadata"]["calibration"]
    assert set(before["flag_rule"]["thresholds"]) == {"sharpness", "n_peaks", "max_probability"}
    path = save_checkpoint(
        tmp_path / "old", result.model, metadata=result.extra["checkpoint_metadata"]
    )
    assert load_detector(path) is None
    calibration = attach_detector(
        path, store_path, subset, tiny_measured_like(2, detector=True), seed=0, progress=False
    )
    assert set(calibration["flag_rule"]["thresholds"]) == set(FLAG_TESTS_WITH_DETECTOR)
    # the validation patterns are the training's own draw: the same temperature
    assert calibration["temperature"] == pytest.approx(before["temperature"], rel=1e-5)
    assert read_metadata(path)["metadata"]["calibration"] == calibration
    predictor = ClassifierPredictor.load(path)
    assert predictor.detector is not None
    np.testing.assert_allclose(
        predictor.logits(result.input_example),
        result.model(torch.from_numpy(result.input_example)).detach().numpy(),
        atol=1e-5,
    )
    # again: the attached detector is kept, only the calibration refitted
    weights = (tmp_path / "old-mixture.safetensors").read_bytes()
    again = attach_detector(
        path, store_path, subset, tiny_measured_like(2, detector=True), seed=0, progress=False
    )
    assert again["mixture_detector"] == {**calibration["mixture_detector"], "reused": True}
    assert again["flag_rule"] == calibration["flag_rule"]
    assert (tmp_path / "old-mixture.safetensors").read_bytes() == weights
    with pytest.raises(TaskError, match="not the store it was trained on"):
        other = result.extra["checkpoint_metadata"] | {"class_names": ["cubic", "triclinic"]}
        save_checkpoint(tmp_path / "other", result.model, metadata=other)
        attach_detector(
            tmp_path / "other",
            store_path,
            subset,
            tiny_measured_like(2, detector=True),
            progress=False,
        )
