"""The one-phase flag: fitted on single-phase patterns, it fires on a planted mixture."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from xrdpipe.evaluation import unseen as u
from xrdpipe.evaluation.ood import (
    FlagRule,
    amorphous_scans,
    fit_flag_rule,
    one_phase_scores,
    peak_scores,
    spend_flag_budget,
)
from xrdpipe.patterns.config import CountingNoiseConfig, ProfileConfig

GRID = ProfileConfig(two_theta_min=20.0, two_theta_max=70.0, n_points=1001)


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - lo) / (hi - lo)


@pytest.fixture(scope="module")
def planted() -> dict[str, np.ndarray]:
    """Three rock-salt phases (a = 4.0, 5.1, 6.3 A): single-phase validation and test
    renders, and their equal three-phase mixture, each on the evaluation stream (one line,
    high counts: every peak of each phase stands out)."""
    profile = u.measured_like_profile(GRID)
    instrument = profile.instrument.model_copy(
        update={"counting_noise": CountingNoiseConfig(max_counts=(5e4, 1e5))}
    )
    profile = profile.model_copy(update={"ka_doublet": False, "instrument": instrument})
    structures = [
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        )
        for a in (4.0, 5.1, 6.3)
    ]
    peaks = u.structure_peaks(structures, profile)
    mixed, weights, phases, _ = u.mixture_peaks(
        peaks, 1, seed=0, phases=(3, 3), min_fraction=1.0 / 3.0
    )
    return {
        "validation": u.render_structures(peaks, profile, draws=40, seed=0),
        "single": u.render_structures(peaks, profile, draws=4, seed=1),
        "mixture": u.render_structures(
            mixed, profile, draws=4, seed=2, weights=weights, phase_index=phases
        ),
    }


def test_flag_fires_on_a_planted_mixture_not_on_its_phases(planted) -> None:
    step = GRID.step_deg
    validation = peak_scores(planted["validation"], step)
    assert validation["n_peaks"].max() <= 7  # 111, 200, 220, 311, 222, 400 (+ 331, 420)
    rule = fit_flag_rule(validation, alpha=0.05, tests=("n_peaks",))
    single = rule.flags(peak_scores(planted["single"], step))
    mixture = rule.reasons(peak_scores(planted["mixture"], step))
    assert not single.any()
    assert all(any(r.startswith("n_peaks") for r in reasons) for reasons in mixture)


def test_flag_fires_on_amorphous_and_noise_only_scans(planted) -> None:
    step = GRID.step_deg
    rule = fit_flag_rule(peak_scores(planted["validation"], step), alpha=0.05)
    assert set(rule.thresholds) == {"sharpness", "n_peaks"}
    tt = np.linspace(GRID.two_theta_min, GRID.two_theta_max, GRID.n_points)
    for hump in (True, False):
        scans = _minmax(amorphous_scans(tt, 5, seed=3, hump=hump))
        reasons = rule.reasons(peak_scores(scans, step))
        assert all(any(r.startswith("sharpness") for r in rs) for rs in reasons)


def test_thresholds_are_quantiles_of_the_validation_scores() -> None:
    scores = {
        "sharpness": np.arange(1.0, 101.0),
        "n_peaks": np.arange(1.0, 101.0),
        "max_probability": np.linspace(0.01, 1.0, 100),
        "energy": -np.arange(1.0, 101.0),
    }
    rule = fit_flag_rule(scores, alpha=0.08)  # 2 % per test, one-sided
    assert rule.thresholds["sharpness"] == pytest.approx(np.quantile(scores["sharpness"], 0.02))
    assert rule.thresholds["n_peaks"] == pytest.approx(np.quantile(scores["n_peaks"], 0.98))
    assert rule.thresholds["energy"] == pytest.approx(-2.98)
    # at most alpha of the validation patterns are flagged (union bound)
    assert rule.flags(scores).mean() <= 0.08
    again = FlagRule.from_dict(rule.as_dict())
    assert again == rule


def test_the_budget_can_be_shared_unevenly() -> None:
    scores = {"sharpness": np.arange(1.0, 101.0), "mixture": np.linspace(0.0, 0.99, 100)}
    rule = fit_flag_rule(scores, 0.05, ("sharpness", "mixture"), {"sharpness": 0.2, "mixture": 0.8})
    # sharpness at the 1 % tail: np.quantile linear of 1..100 at 0.01 = 1.99
    assert rule.thresholds["sharpness"] == pytest.approx(1.99)
    # mixture at the upper 4 % tail: 0.99 * 0.96 = 0.9504
    assert rule.thresholds["mixture"] == pytest.approx(0.9504)
    assert set(rule.thresholds) == {"sharpness", "mixture"}
    assert rule.reasons({"sharpness": np.array([1.0]), "mixture": np.array([0.97])}) == [
        ["sharpness 1 < 1.99", "mixture 0.97 > 0.95"]
    ]
    with pytest.raises(ValueError, match="positive share, summing to 1"):
        fit_flag_rule(scores, 0.05, ("sharpness", "mixture"), {"sharpness": 0.5, "mixture": 0.6})


def test_a_capped_test_leaves_its_budget_to_the_detector() -> None:
    # 100 validation patterns: sharpness 1..100 (low is bad), p(mixture) 0.00..0.99
    scores = {"sharpness": np.arange(1.0, 101.0), "mixture": np.arange(100) / 100}
    rule = fit_flag_rule(scores, 0.05, ("sharpness", "mixture"), {"sharpness": 0.2, "mixture": 0.8})
    capped = FlagRule({**rule.thresholds, "sharpness": 0.5}, rule.alpha, 100)  # flags none
    assert capped.flags(scores).sum() == 4  # the union bound spends 4 of the 5 allowed
    spent = spend_flag_budget(capped, scores, "mixture")
    # the five largest (0.95..0.99) are flagged: midway between 0.94 and 0.95
    assert spent.thresholds == {"sharpness": 0.5, "mixture": pytest.approx(0.945)}
    assert spent.flags(scores).sum() == 5
    # with sharpness flagging 1, 2 and 3, three patterns flagged by both count once
    scores["mixture"] = np.r_[0.995, 0.996, 0.997, np.arange(97) / 100]
    three = FlagRule({"sharpness": 3.5, "mixture": 0.99}, 0.05, 100)
    spent = spend_flag_budget(three, scores, "mixture")
    assert spent.thresholds["mixture"] == pytest.approx(0.945)  # and 0.96, 0.95 of the rest
    assert spent.flags(scores).sum() == 5
    # others already spending the budget: unchanged
    full = FlagRule({"sharpness": 6.5, "mixture": 0.99}, 0.05, 100)
    assert spend_flag_budget(full, scores, "mixture") == full


def test_scores_from_logits_and_from_probabilities_agree() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((4, 200))
    logits = rng.normal(size=(4, 7)) * 3
    from_logits = one_phase_scores(x, 0.05, logits=logits, temperature=2.0)
    z = logits / 2.0
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    from_p = one_phase_scores(x, 0.05, probabilities=p)
    np.testing.assert_allclose(from_logits["max_probability"], from_p["max_probability"])
    # energy: -T logsumexp(z / T), by hand for the first row
    row = logits[0] / 2.0
    expected = -2.0 * (row.max() + np.log(np.exp(row - row.max()).sum()))
    assert from_logits["energy"][0] == pytest.approx(expected)
    assert "energy" not in from_p
    with pytest.raises(ValueError, match="subset"):
        fit_flag_rule(from_logits, tests=("peaks",))
