"""predict's calibrated probabilities and one-phase flag (temperature and rule with the model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import softmax

from xrdpipe.evaluation.ood import FlagRule
from xrdpipe.readers import ModelGrid, PreparedPattern
from xrdpipe.stages.predict import (
    FilePrediction,
    Member,
    ModelEnsemble,
    ModelOutput,
    format_prediction,
    system_sums,
)

GRID = ModelGrid(10.0, 80.0, 701, 1.5406)


class _Probabilities(torch.nn.Module):
    """A linear classifier with a softmax head: what a logged classifier outputs."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


def _ensemble(
    calibration: dict,
    labels: tuple[str, ...] = ("cubic", "hexagonal", "triclinic"),
    task: str = "lattice-system",
    seed: int = 0,
) -> tuple[ModelEnsemble, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(labels), GRID.n_points, generator=generator) * 0.2
    member = Member("1", "0", _Probabilities(weight), None)
    ensemble = ModelEnsemble(
        name="m",
        kind="classifier",
        task=task,
        chosen="1",
        how="@champion",
        labels=list(labels),
        formulas=[],
        grid=GRID,
        members=[member],
        config={},
        calibration=calibration,
    )
    return ensemble, weight


def _pattern(peaks: list[float]) -> np.ndarray:
    tt = GRID.two_theta
    y = sum(np.exp(-0.5 * ((tt - p) / 0.05) ** 2) for p in peaks) + 0.02
    return (y / y.max()).astype(np.float32)


def test_probabilities_are_tempered_by_the_stored_temperature() -> None:
    x = np.stack([_pattern([30.0, 45.0]), _pattern([25.0])])
    plain, weight = _ensemble({})
    tempered, _ = _ensemble({"temperature": 2.5})
    assert plain.temperature is None and tempered.temperature == 2.5
    logits = (torch.from_numpy(x) @ weight.T).numpy()
    np.testing.assert_allclose(plain.predict(x)[0], softmax(logits, axis=1), atol=1e-5)
    np.testing.assert_allclose(tempered.predict(x)[0], softmax(logits / 2.5, axis=1), atol=1e-5)


def test_flag_and_its_reasons_are_printed() -> None:
    rule = FlagRule({"sharpness": 20.0, "n_peaks": 4.0}, 0.05, 100)
    ensemble, _ = _ensemble({"temperature": 1.0, "flag_rule": rule.as_dict()})
    one = _pattern([30.0, 45.0, 52.0])
    many = _pattern([20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0])
    assert ensemble.one_phase_flag(one, ensemble.predict(one[None])[0][0]) == []
    reasons = ensemble.one_phase_flag(many, ensemble.predict(many[None])[0][0])
    assert reasons == ["n_peaks 7 > 4"]
    mean, std = ensemble.predict(many[None])
    prepared = PreparedPattern(many, np.ones(GRID.n_points, bool), 1.5406, 1.5406, (10.0, 80.0))
    out = ModelOutput(
        "m v1",
        "classifier",
        "lattice-system",
        ensemble.labels,
        [],
        mean[0],
        std[0],
        1,
        prepared,
        calibrated=True,
        flag=reasons,
    )
    text = format_prediction(FilePrediction(Path("s.xy"), [out], []))
    assert "FLAG: does not look like one phase of the training data (n_peaks 7 > 4)" in text
    assert "not calibrated" not in text
    assert out.as_dict()["one_phase_flag"] == ["n_peaks 7 > 4"]
    uncalibrated = ModelOutput(
        "m v1",
        "classifier",
        "lattice-system",
        ensemble.labels,
        [],
        mean[0],
        std[0],
        1,
        prepared,
    )
    text = format_prediction(FilePrediction(Path("s.xy"), [uncalibrated], []))
    assert "probabilities not calibrated" in text and "FLAG" not in text


def test_no_rule_no_flag() -> None:
    ensemble, _ = _ensemble({})
    x = _pattern([30.0])
    assert ensemble.one_phase_flag(x, ensemble.predict(x[None])[0][0]) is None
    with pytest.raises(ValueError, match="temperature"):
        _ensemble({"temperature": -1.0})[0].predict(x[None])


class _WindowDetector(torch.nn.Module):
    """A planted mixture detector: its ``mixture`` logit is the pattern's mean over
    60-65 deg times 400, minus 12 (a second phase's line there makes it a mixture)."""

    def __init__(self) -> None:
        super().__init__()
        window = torch.from_numpy(((GRID.two_theta > 60.0) & (GRID.two_theta < 65.0)).astype("f4"))
        self.register_buffer("window", window / window.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 400.0 * (x * self.window).sum(dim=1) - 12.0
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_the_mixture_detector_is_the_flags_mixture_test() -> None:
    rule = FlagRule({"sharpness": 20.0, "mixture": 0.5}, 0.05, 100)
    ensemble, _ = _ensemble({"temperature": 1.0, "flag_rule": rule.as_dict()})
    ensemble.detector = _WindowDetector()
    phase = _pattern([30.0, 45.0])
    mixture = _pattern([30.0, 45.0, 62.0])
    assert ensemble.one_phase_flag(phase, ensemble.predict(phase[None])[0][0]) == []
    reasons = ensemble.one_phase_flag(mixture, ensemble.predict(mixture[None])[0][0])
    # p(mixture) = sigmoid(400 * mean over the window - 12): ~0.016 without the 62 deg line
    window = (GRID.two_theta > 60.0) & (GRID.two_theta < 65.0)
    expected = 1.0 / (1.0 + np.exp(-(400.0 * mixture[window].mean() - 12.0)))
    assert expected > 0.9
    assert reasons == [f"mixture {expected:.3g} > 0.5"]
    ensemble.detector = None  # a run saved without one: the test is skipped, not failed
    assert ensemble.one_phase_flag(mixture, ensemble.predict(mixture[None])[0][0]) == []


def test_a_space_group_model_also_answers_crystal_and_lattice_system() -> None:
    groups = ["225", "194", "166", "164"]
    ensemble, _ = _ensemble({}, tuple(groups), "space-group", seed=1)
    x = _pattern([30.0, 45.0])
    mean = ensemble.predict(x[None])[0][0]
    systems = system_sums(ensemble, mean)
    # by hand: 166 and 164 are trigonal; 166 rhombohedral, 164 and 194 hexagonal lattices
    assert systems["crystal_system"]["trigonal"] == pytest.approx(mean[2] + mean[3])
    assert systems["crystal_system"]["hexagonal"] == pytest.approx(mean[1])
    assert systems["lattice_system"]["hexagonal"] == pytest.approx(mean[1] + mean[3])
    assert systems["lattice_system"]["rhombohedral"] == pytest.approx(mean[2])
    assert systems["lattice_system"]["cubic"] == pytest.approx(mean[0])
    prepared = PreparedPattern(x, np.ones(GRID.n_points, bool), 1.5406, 1.5406, (10.0, 80.0))
    out = ModelOutput(
        "sg v1", "classifier", "space-group", groups, [], mean, mean * 0, 1, prepared,
        systems=systems,
    )  # fmt: skip
    text = format_prediction(FilePrediction(Path("s.xy"), [out], []))
    best = max(systems["crystal_system"], key=systems["crystal_system"].get)
    assert f"crystal system: {best} {systems['crystal_system'][best]:.3f}" in text
    assert out.as_dict()["systems"] == systems
    lattice_model, _ = _ensemble({})
    assert system_sums(lattice_model, lattice_model.predict(x[None])[0][0]) == {}
