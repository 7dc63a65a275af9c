"""Evaluation metrics against scikit-learn; phase-fraction baselines on a tiny real store."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import nnls

from tests.support import TINY_IDS, TINY_SUBSET
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.baselines import (
    BASELINES,
    background_basis,
    background_decays,
    bin_patterns,
    dictionary_profiles,
    gram_nnls,
    nnls_fractions,
    run_fraction_baselines,
    to_fractions,
    training_mixtures,
    uniform_guess_tvd,
)
from xrdpipe.evaluation.metrics import (
    classification_metrics,
    fraction_metrics,
    total_variation_distance,
)
from xrdpipe.patterns.config import MixtureConfig
from xrdpipe.patterns.datasets import fixed_mixture_set, load_peaks
from xrdpipe.patterns.mixtures import MixtureSampler, split_train_validation
from xrdpipe.patterns.render import two_theta_grid

PROFILE = TINY_SUBSET.profile
IDS = TINY_IDS[:3]
"""N = 3 materials of the tiny store (1501-point grid)."""
CLEAN = PROFILE.model_copy(
    update={
        "eta_range": (PROFILE.clean_eta, PROFILE.clean_eta),
        "crystallite_size_nm": (50.0, 50.0),
        "noise_fraction": (0.0, 0.0),
        "background_amplitude": (0.0, 0.0),
    }
)
"""Mixtures with the dictionary's own peak shape and neither noise nor background."""


@pytest.fixture
def store(tiny_store_built: Path) -> Path:
    """The tiny store, read only (no test here writes to it)."""
    return tiny_store_built / "patterns.zarr"


pytestmark = pytest.mark.usefixtures("one_thread")


# --- metrics ----------------------------------------------------------------------------------


def test_tvd_and_fraction_metrics_match_a_hand_computation():
    pred = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    true = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    # 0.5 * (0.3 + 0.2 + 0.5) = 0.5 and 0
    np.testing.assert_allclose(total_variation_distance(pred, true), [0.5, 0.0])
    assert total_variation_distance(pred[0], true[0]) == pytest.approx([0.5])
    m = fraction_metrics(pred, true)
    assert m["tvd_mean"] == pytest.approx(0.25)
    assert m["tvd_std"] == pytest.approx(0.25)
    assert m["tvd_sem"] == pytest.approx(math.sqrt(0.125) / math.sqrt(2))
    assert m["mae"] == pytest.approx(1.0 / 6.0)
    assert m["rmse"] == pytest.approx(math.sqrt((0.09 + 0.04 + 0.25) / 6.0))
    with pytest.raises(ValueError, match="shape"):
        total_variation_distance(pred, true[:, :2])


@pytest.mark.parametrize("named", [False, True])
def test_classification_metrics_match_scikit_learn(named):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    rng = np.random.default_rng(4)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))
    y_pred[y_pred == 4] = 0  # class 4 is never predicted: precision 0, no warning
    labels = [0, 1, 2, 3, 4]
    names = ["cubic", "hexagonal", "monoclinic", "orthorhombic", "triclinic"]
    if named:
        y_true, y_pred = np.array(names)[y_true], np.array(names)[y_pred]
        labels = names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y_true, y_pred, labels, names)
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    for average in ("micro", "macro"):
        expected = f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0)
        assert m[f"{average}_f1"] == pytest.approx(expected)
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    assert list(m["precision"]) == names
    np.testing.assert_allclose(list(m["precision"].values()), precision)
    np.testing.assert_allclose(list(m["recall"].values()), recall)
    assert m["precision"]["triclinic"] == 0.0 and m["recall"]["triclinic"] == 0.0
    np.testing.assert_array_equal(m["confusion"], confusion_matrix(y_true, y_pred, labels=labels))


# --- pure pieces --------------------------------------------------------------------------------


def test_to_fractions_clips_renormalises_and_falls_back_to_uniform():
    out = to_fractions(np.array([[0.6, -0.2, 0.2], [-1.0, 0.0, -0.5], [2.0, 1.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.75, 0.0, 0.25], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.25, 0.25]])


def test_gram_nnls_matches_scipy_nnls():
    rng = np.random.default_rng(0)
    a = rng.random((120, 40))
    for _ in range(3):
        y = a[:, :5] @ rng.random(5) - 0.5 * a[:, 20] + 0.1 * rng.normal(size=120)
        expected, _ = nnls(a, y)
        got = gram_nnls(a.T @ a, a.T @ y)
        assert (got >= 0).all()
        np.testing.assert_allclose(got, expected, atol=1e-8)


def test_bin_patterns_averages_contiguous_windows():
    x = np.arange(12, dtype=np.float32).reshape(1, 12)
    np.testing.assert_allclose(bin_patterns(x, 4), [[1.0, 4.0, 7.0, 10.0]])
    assert bin_patterns(np.zeros((2, 1501)), 450).shape == (2, 500)


# --- NNLS on the store ----------------------------------------------------------------------------


def test_dictionary_columns_carry_the_phase_area(store):
    ref = dictionary_profiles(store, IDS, PROFILE, "reference", crystallite_sizes_nm=[50.0])
    assert ref.shape == (3, 1, PROFILE.n_points)
    peaks = load_peaks(store, "reference", IDS).peaks
    inside = peaks.peak_mask & (peaks.two_theta > PROFILE.two_theta_min + 1.0)
    inside &= peaks.two_theta < PROFILE.two_theta_max - 1.0
    sticks = (peaks.intensity * inside).sum(dim=-1)[:, 0].numpy()
    # not normalised per profile: each column's area is its max-100 sticks' total
    np.testing.assert_allclose(ref[:, 0].sum(axis=1) * PROFILE.step_deg, sticks, rtol=0.03)
    train_idx, _ = split_train_validation(10, seed=TINY_SUBSET.seed)
    strained = dictionary_profiles(
        store, IDS, PROFILE, "train", strain_index=train_idx, max_strains=4, seed=1
    )
    assert strained.shape == (3, 4 * 3, PROFILE.n_points)  # 4 strains x 3 sizes


@pytest.mark.parametrize("mode", ["intensity", "weight"])
def test_nnls_recovers_clean_mixtures_of_reference_profiles(store, mode):
    peaks = load_peaks(store, "reference", IDS)
    cfg = MixtureConfig(n_materials=3, max_phases=3, batch_size=40, fraction_mode=mode)
    sampler = MixtureSampler(peaks.peaks, cfg, CLEAN, seed=3, device="cpu")
    patterns, fractions, _ = sampler.sample()
    dictionary = dictionary_profiles(
        store, IDS, PROFILE, "reference", fraction_mode=mode, crystallite_sizes_nm=[50.0]
    )
    # the final min-max rescaling leaves a small constant offset: the constant column takes it
    basis = background_basis(two_theta_grid(PROFILE).numpy(), [])
    pred = nnls_fractions(patterns.numpy(), dictionary, basis)
    tvd = total_variation_distance(pred, fractions.numpy())
    assert tvd.max() < 1e-3


def test_nnls_with_background_columns_recovers_fractions_under_a_background(store):
    peaks = load_peaks(store, "reference", IDS)
    cfg = MixtureConfig(n_materials=3, max_phases=3, batch_size=40)
    patterns, fractions, _ = MixtureSampler(peaks.peaks, cfg, CLEAN, seed=5).sample()
    grid = two_theta_grid(PROFILE).numpy()
    background = 0.25 * np.exp(-(grid - grid[0]) / 12.0) + 0.05  # not one of the columns
    y = patterns.numpy() + background
    y = (y - y.min(axis=1, keepdims=True)) / np.ptp(y, axis=1, keepdims=True)
    dictionary = dictionary_profiles(store, IDS, PROFILE, "reference", crystallite_sizes_nm=[50])
    basis = background_basis(grid, background_decays(PROFILE))
    assert basis.shape == (PROFILE.n_points, 3)
    with_bg = total_variation_distance(nnls_fractions(y, dictionary, basis), fractions.numpy())
    without = total_variation_distance(nnls_fractions(y, dictionary), fractions.numpy())
    assert with_bg.mean() < 0.01
    assert without.mean() > 3 * with_bg.mean()
    scipy_fit = nnls_fractions(y, dictionary, basis, solver="scipy")
    np.testing.assert_allclose(
        nnls_fractions(y, dictionary, basis, solver="gram"), scipy_fit, atol=1e-6
    )


# --- the comparison ------------------------------------------------------------------------------


def test_every_baseline_returns_fractions_and_beats_the_uniform_guess(store):
    cfg = MixtureConfig(n_materials=3, max_phases=3, batch_size=200)
    train_idx, _ = split_train_validation(10, seed=TINY_SUBSET.seed)
    train_x, train_y = training_mixtures(
        store, IDS, cfg, PROFILE, n=600, seed=1, strain_index=train_idx, n_bins=450
    )
    assert train_x.shape == (600, 500) and train_x.dtype == np.float32
    np.testing.assert_allclose(train_y.sum(axis=1), 1.0, atol=1e-5)
    test = fixed_mixture_set(store, "test", IDS, cfg, PROFILE, n=200, seed=9)
    reference = dictionary_profiles(store, IDS, PROFILE, "reference")
    strained = dictionary_profiles(store, IDS, PROFILE, "train", strain_index=train_idx)
    seen: list[str] = []
    results = run_fraction_baselines(
        train_x,
        train_y,
        test.patterns,
        test.phase_fractions,
        reference,
        strained,
        profile=PROFILE,
        progress=seen.append,
    )
    assert [r.name for r in results] == list(BASELINES) == seen
    uniform = uniform_guess_tvd(test.phase_fractions)
    assert 0.4 < uniform < 0.7
    for r in results:
        assert r.predictions.shape == (200, 3)
        assert (r.predictions >= 0).all()
        np.testing.assert_allclose(r.predictions.sum(axis=1), 1.0, atol=1e-5)
        recomputed = total_variation_distance(r.predictions, test.phase_fractions.numpy())
        assert r.tvd_mean == pytest.approx(recomputed.mean(), abs=1e-6)
        assert r.tvd_mean < 0.8 * uniform, (r.name, r.tvd_mean, uniform)
        assert r.params and r.predict_s >= 0 and set(r.metrics()) >= {"tvd_mean", "fit_s"}
    by_name = {r.name: r for r in results}
    assert by_name["random_forest"].params["randomforestregressor.n_jobs"] == 1
    assert by_name["knn"].params["n_bins"] == 500
    assert by_name["nnls_strained"].params["columns_per_material"] == 6 * 3
    assert by_name["nnls_reference"].tvd_mean < 0.5 * uniform


def test_run_fraction_baselines_refuses_unknown_names_and_missing_dictionaries():
    x, y = np.random.default_rng(0).random((4, 100)), np.full((4, 2), 0.5)
    with pytest.raises(ConfigError, match="'svm'"):
        run_fraction_baselines(x, y, x, y, None, None, names=["svm"])
    with pytest.raises(ConfigError, match="needs its dictionary"):
        run_fraction_baselines(x, y, x, y, None, None, names=["nnls_reference"])
