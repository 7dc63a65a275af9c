"""The one-phase flag: does a pattern look like one phase of the classifier's training data?

A classifier of crystal systems answers for every pattern, also for a mixture of phases,
an amorphous or a noise-only scan. :func:`one_phase_scores` measures four things of a
prepared pattern (on the model's grid, min-max normalised) and its calibrated
classifier output; :class:`FlagRule` flags the pattern when any of them is outside the range
that single-phase validation patterns keep (:func:`fit_flag_rule`):

1. ``sharpness`` (low: no crystalline peaks): the strongest rise of the pattern above its
   local baseline (a running minimum over ``+-4 w``, smoothed), in units of the noise
   level (``1.4826 * MAD`` of the first differences over ``sqrt(2)``); an amorphous hump or
   a noise-only scan has no sharp peak well above its noise.
2. ``n_peaks`` (high: more peaks than one phase shows): local maxima over ``+-w`` points that
   rise above the local baseline by at least ``PEAK_HEIGHT`` of the maximum and
   ``PEAK_SIGMAS`` noise levels (so counting noise makes no peaks).
3. ``max_probability`` (low): the calibrated probability of the top class.
4. ``energy`` (high): the free energy ``-T logsumexp(z / T)`` of the logits (Liu et al.,
   NeurIPS 2020): larger for inputs unlike the training data.
5. ``mixture`` (high): ``p(mixture)`` of the classifier's mixture detector
   (:mod:`xrdpipe.training.mixture_detector`), a network trained to tell one phase from
   2-3; the only test here that sees mixtures (the others flag 2-4 % of them).

Each threshold is a quantile of the single-phase validation scores: the false-flag budget
``alpha`` is split over the tests used (evenly, ``alpha / k`` each, unless shares are given;
one-sided), so at most ``alpha`` of single-phase patterns like the validation ones are flagged
(union bound).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from xrdpipe.evaluation.calibration import calibrated_probabilities
from xrdpipe.indexing.lines import noise_level
from xrdpipe.patterns.augment import find_peaks, local_baseline
from xrdpipe.patterns.physics import pseudo_voigt_height_profile

PEAK_WINDOW_DEG = 0.1
"""Half-width ``w`` of the peak test, degrees (a peak is the maximum over ``+-w``)."""
PEAK_HEIGHT = 0.02
"""A counted peak rises at least this fraction of the pattern maximum above its baseline."""
PEAK_SIGMAS = 5.0
"""A counted peak rises at least this many noise levels above its baseline."""
TESTS = ("sharpness", "n_peaks", "max_probability", "energy", "mixture")
"""The scores of the rule, in the order reasons are listed."""
LOW_IS_BAD = {
    "sharpness": True,
    "n_peaks": False,
    "max_probability": True,
    "energy": False,
    "mixture": False,
}
"""Whether a score flags below its threshold (True) or above it (False)."""


def peak_scores(profiles: np.ndarray, step_deg: float) -> dict[str, np.ndarray]:
    """``sharpness`` and ``n_peaks`` of prepared patterns ``(B, n_points)`` (module docstring)."""
    x = np.asarray(profiles, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"profiles must be (B, n_points), got shape {x.shape}")
    half = max(1, int(round(PEAK_WINDOW_DEG / step_deg)))
    t = torch.from_numpy(np.ascontiguousarray(x))
    rise = (t - local_baseline(t, half)).numpy()
    sigma = noise_level(x, floor=1e-6)
    peaks = find_peaks(t, half, PEAK_HEIGHT).numpy() & (rise > PEAK_SIGMAS * sigma[:, None])
    return {
        "sharpness": rise.max(axis=1) / sigma,
        "n_peaks": peaks.sum(axis=1).astype(np.float64),
    }


def one_phase_scores(
    profiles: np.ndarray,
    step_deg: float,
    *,
    logits: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    temperature: float = 1.0,
    mixture: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The scores of each pattern (module docstring); each ``(B,)``.

    With ``logits``, four (probabilities calibrated by ``temperature``); with calibrated
    ``probabilities`` only (a logged model that outputs probabilities), no ``energy``, which
    needs the logits' scale; with neither, the two peak scores. ``mixture``: the detector's
    ``p(mixture)`` of the patterns, the fifth.
    """
    scores = peak_scores(profiles, step_deg)
    if logits is not None:
        z = np.asarray(logits, dtype=np.float64)
        scores["max_probability"] = calibrated_probabilities(z, temperature).max(axis=1)
        scores["energy"] = -temperature * logsumexp(z / temperature, axis=1)
    elif probabilities is not None:
        scores["max_probability"] = np.asarray(probabilities, dtype=np.float64).max(axis=1)
    if mixture is not None:
        scores["mixture"] = np.asarray(mixture, dtype=np.float64).reshape(-1)
    return scores


@dataclass(frozen=True)
class FlagRule:
    """Thresholds of the one-phase flag (fitted by :func:`fit_flag_rule`).

    Attributes:
        thresholds: ``{test: threshold}`` for the tests used (:data:`TESTS`).
        alpha: the false-flag budget on single-phase validation patterns.
        n_validation: validation patterns the thresholds come from.
    """

    thresholds: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    n_validation: int = 0

    def reasons(self, scores: dict[str, np.ndarray]) -> list[list[str]]:
        """Per pattern, the tests it fails (``"n_peaks 41 > 30"``...); empty: not flagged.

        A test whose score is not in ``scores`` (``energy`` without logits) is skipped.
        """
        n = len(next(iter(scores.values())))
        out: list[list[str]] = [[] for _ in range(n)]
        for test in TESTS:
            if test not in self.thresholds or test not in scores:
                continue
            t = self.thresholds[test]
            values = np.asarray(scores[test])
            bad = values < t if LOW_IS_BAD[test] else values > t
            sign = "<" if LOW_IS_BAD[test] else ">"
            for i in np.flatnonzero(bad):
                out[i].append(f"{test} {values[i]:.3g} {sign} {t:.3g}")
        return out

    def flags(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """``(B,)`` bool: the pattern fails at least one test."""
        return np.array([bool(r) for r in self.reasons(scores)], dtype=bool)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlagRule:
        return cls(
            thresholds={str(k): float(v) for k, v in (data.get("thresholds") or {}).items()},
            alpha=float(data.get("alpha", 0.05)),
            n_validation=int(data.get("n_validation", 0)),
        )


def fit_flag_rule(
    scores: dict[str, np.ndarray],
    alpha: float = 0.05,
    tests: tuple[str, ...] | None = None,
    shares: dict[str, float] | None = None,
) -> FlagRule:
    """Thresholds from single-phase validation scores: each test at ``alpha / len(tests)``.

    Args:
        scores: :func:`one_phase_scores` of single-phase validation patterns.
        alpha: the false-flag budget (union bound over the tests).
        tests: the tests to use (a subset of :data:`TESTS`; default those in ``scores``).
        shares: each test's share of ``alpha`` (positive, summing to 1; default even): test
            ``t`` is set at the ``alpha * shares[t]`` tail of its validation scores.
    """
    if tests is None:
        tests = tuple(t for t in TESTS if t in scores)
    unknown = [t for t in tests if t not in TESTS]
    if unknown or not tests:
        raise ValueError(f"tests {list(tests)} must be a non-empty subset of {list(TESTS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if shares is None:
        shares = {t: 1.0 / len(tests) for t in tests}
    if (
        set(shares) != set(tests)
        or min(shares.values()) <= 0
        or abs(sum(shares.values()) - 1) > 1e-9
    ):
        raise ValueError(
            f"shares {shares} must give each of the tests {list(tests)} a positive share, "
            "summing to 1"
        )
    thresholds = {}
    for test in tests:
        q = alpha * shares[test]
        values = np.asarray(scores[test], dtype=np.float64)
        level = q if LOW_IS_BAD[test] else 1.0 - q
        thresholds[test] = float(np.quantile(values, level, method="linear"))
    return FlagRule(thresholds, alpha, int(len(next(iter(scores.values())))))


def spend_flag_budget(rule: FlagRule, scores: dict[str, np.ndarray], test: str) -> FlagRule:
    """``rule`` with ``test``'s threshold moved so that the rule flags ``alpha`` of ``scores``.

    :func:`fit_flag_rule` sets each test at its share of ``alpha`` (a union bound). A
    threshold capped afterwards (the sharpness test's, :data:`~xrdpipe.training.
    measured_like.NO_PEAK_SHARPNESS`) flags fewer validation patterns than its share, and
    tests that flag the same patterns overlap: the rule then flags less than ``alpha``.
    Here ``test`` takes what the other tests leave: its threshold is the quantile of the
    patterns they do not flag at which the whole rule flags ``round(alpha * n)`` of the
    ``n`` single-phase validation patterns (unchanged when the others already flag that
    many).
    """
    others = FlagRule({k: v for k, v in rule.thresholds.items() if k != test}, rule.alpha)
    flagged = others.flags(scores)  # none without other tests
    left = int(round(rule.alpha * len(scores[test]))) - int(flagged.sum())
    values = np.sort(np.asarray(scores[test], dtype=np.float64)[~flagged])
    if left <= 0 or values.size <= left:
        return rule
    # the left-th most extreme value is flagged, the next is not: the threshold is midway
    threshold = (
        0.5 * (values[left - 1] + values[left])
        if LOW_IS_BAD[test]
        else 0.5 * (values[-left] + values[-left - 1])
    )
    return replace(rule, thresholds={**rule.thresholds, test: float(threshold)})


def amorphous_scans(two_theta: np.ndarray, n: int, seed: int = 0, hump: bool = True) -> np.ndarray:
    """Scans with no crystalline peak: ``(n, len(two_theta))`` counts.

    ``hump`` (amorphous): one to three broad pseudo-Voigt humps (FWHM 4-15 deg, centres
    15-45 deg, heights 0.3-1) on a linear-plus-exponential background; otherwise (noise
    only) the background alone. Poisson counts at 1e2-1e4 at the strongest point.
    """
    rng = np.random.default_rng(seed)
    tt = np.asarray(two_theta, dtype=np.float64)
    span = tt[-1] - tt[0]
    out = np.empty((n, tt.size))
    for i in range(n):
        y = rng.uniform(0.05, 0.5) * np.exp(-(tt - tt[0]) / rng.uniform(5.0, 40.0))
        y += rng.uniform(0.05, 0.3) + rng.uniform(-0.05, 0.05) * (tt - tt[0]) / span
        if hump:
            for _ in range(int(rng.integers(1, 4))):
                centre, fwhm = rng.uniform(15.0, 45.0), rng.uniform(4.0, 15.0)
                y += rng.uniform(0.3, 1.0) * pseudo_voigt_height_profile(
                    tt - centre, fwhm, rng.uniform(0.0, 0.5)
                )
        y = np.clip(y, 1e-3, None)
        counts = np.exp(rng.uniform(np.log(1e2), np.log(1e4)))
        out[i] = rng.poisson(y / y.max() * counts)
    return out
