"""Temperature scaling and the equal-mass expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import log_loss

from xrdpipe.evaluation.calibration import (
    calibrated_probabilities,
    ece_interval,
    equal_mass_bins,
    expected_calibration_error,
    fit_temperature,
    nll,
)


def test_ece_hand_computed() -> None:
    # confidences 0.6 (right), 0.7 (wrong), 0.9 (right), 0.8 (right); two equal-mass bins:
    # {0.6, 0.7}: conf 0.65, acc 0.5, gap 0.15; {0.8, 0.9}: conf 0.85, acc 1.0, gap 0.15.
    p = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.15, abs=1e-12)
    # one sample per bin: the mean of |correct - confidence| = (0.4 + 0.7 + 0.1 + 0.2) / 4
    assert expected_calibration_error(p, y, n_bins=4) == pytest.approx(0.35, abs=1e-12)


def test_ten_equal_mass_bins() -> None:
    bins = equal_mass_bins(25, 10)
    assert np.bincount(bins).tolist() == [2, 3, 2, 3, 2, 3, 2, 3, 2, 3]
    assert (np.diff(bins) >= 0).all()


def _planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated logits (labels drawn from their own softmax) and the labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.2, (n, 6))
    p = softmax(z, axis=1)
    y = np.array([rng.choice(6, p=row) for row in p])
    return z, y


def test_temperature_undoes_planted_over_confidence() -> None:
    z_val, y_val = _planted(4000, 0)
    z_test, y_test = _planted(4000, 1)
    t = fit_temperature(5.0 * z_val, y_val)
    assert t == pytest.approx(5.0, rel=0.12)
    # the NLL agrees with scikit-learn's log loss
    assert nll(5.0 * z_val, y_val, t) == pytest.approx(
        log_loss(y_val, softmax(5.0 * z_val / t, axis=1), labels=range(6)), rel=1e-9
    )
    before = expected_calibration_error(softmax(5.0 * z_test, axis=1), y_test)
    after = expected_calibration_error(calibrated_probabilities(5.0 * z_test, t), y_test)
    assert before > 0.2
    assert after < 0.04
    assert after < before
    # tempering probabilities equals tempering logits; the predicted class never changes
    from_p = calibrated_probabilities(softmax(5.0 * z_test, axis=1), t, are_logits=False)
    np.testing.assert_allclose(from_p, calibrated_probabilities(5.0 * z_test, t), atol=1e-9)
    assert (from_p.argmax(1) == z_test.argmax(1)).all()


def test_ece_interval_brackets_the_value() -> None:
    z, y = _planted(500, 2)
    interval = ece_interval(softmax(3.0 * z, axis=1), y, n_boot=200)
    assert interval.low <= interval.value <= interval.high
    assert interval.low > 0.05


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="shape"):
        expected_calibration_error(np.ones(3), [0, 0, 0])
    with pytest.raises(ValueError, match="temperature"):
        calibrated_probabilities(np.ones((2, 2)), 0.0)


def test_reliability_and_flag_plots_are_written(tmp_path):
    from xrdpipe.evaluation.calibration import reliability
    from xrdpipe.evaluation.calibration_plots import plot_flag_rates, plot_reliability

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, size=200)
    diagram = reliability(p, y)
    assert sum(diagram["count"]) == 200 and len(diagram["confidence"]) == 10
    png = plot_reliability({"m": diagram}, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rates = {"rates": {"single": {"flagged": 0.02, "n": 10}, "mixture": {"flagged": 0.6, "n": 5}}}
    assert plot_flag_rates({"a": rates, "b": rates}, tmp_path / "f.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="differ"):
        plot_reliability({"m": {"confidence": [0.5], "accuracy": [0.4, 0.6]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_flag_rates({}, tmp_path / "y.png")
