"""Classical phase-fraction baselines (paper 002's comparison): regressors and NNLS fits.

Every baseline is fitted on the same training mixtures and scored on exactly the same test
mixtures as the CNN (:func:`run_fraction_baselines`), and returns phase fractions: negative
outputs clipped to 0 and each row renormalised to sum to one (all zero: uniform, 1/N).

Regressors (scikit-learn, :func:`~xrdpipe.evaluation.estimators.make_regressor`, on patterns
averaged over ``n_bins`` contiguous windows, about 450 points, :func:`bin_patterns`): ``knn``
(standardised inputs, 10 neighbours weighted by distance), ``random_forest`` (60 trees, 10 %
of the features per split, leaves of >= 5, ``n_jobs=1``), ``ridge`` (standardised, alpha 10)
and ``mlp`` (standardised, 256-128 ReLU, Adam, early stopping on 10 % of the training set).
Defaults sized for 20,000 x 450 inputs on two cores (measured at 5,000 x 500, N = 5, on a
loaded two-core machine: forest of 100 trees 41 s, MLP 15 s, the others < 1 s; fitting time
grows about linearly with the mixtures).

Physics baselines: non-negative least squares (``scipy.optimize.nnls``) of each test pattern
against a dictionary of single-phase profiles plus a background, fractions = the material
coefficients summed per material, normalised to sum to one.

1. Dictionary columns are rendered by the project's renderer
   (:func:`~xrdpipe.patterns.render.render_clean`, ``normalize=False``) from the sticks a
   phase contributes to a mixture *at fraction 1*
   (:func:`~xrdpipe.patterns.mixtures.mixture_intensities` with fraction 1: the max-100
   intensities in ``intensity`` mode, ``intensity_raw / (rho V^2)`` in ``weight`` mode). The
   mixture renderer scales each phase's sticks by its fraction and keeps each peak's area
   (pseudo-Voigt of unit area), then normalises the *whole* pattern, so the coefficient of a
   phase's column is its fraction times one common factor per pattern: coefficient ratios are
   fraction ratios. (Columns normalised to their own maximum would not be: a broad phase has a
   lower maximum than a sharp one of the same area.)
2. ``nnls_reference``: one column per material, the unstrained condition (the store's
   ``reference`` split). ``nnls_strained``: up to :data:`MAX_DICTIONARY_STRAINS` training
   strain conditions per material; coefficients summed per material.
3. Peak widths: mixtures draw a crystallite size (10-100 nm) and eta per phase, the
   dictionary uses the profile's fixed ``clean_eta`` and the sizes in
   ``crystallite_sizes_nm`` (default :data:`DICTIONARY_SIZES_NM` quantiles of the drawn
   range, one column each, summed per material), so that a least-squares fit of a broad peak
   by a narrow one does not bias the fractions.
4. Background (documented choice): three columns, a constant and two decaying exponentials
   ``exp(-(2theta - 2theta_min) / tau)`` with ``tau`` at the 10 % and 75 % points (log scale)
   of the profile's ``background_decay_deg`` range. Their coefficients are free in sign: the
   fit is done in the orthogonal complement of the background columns (an exact elimination
   of unconstrained coefficients), because the final min-max rescaling shifts the pattern by
   a constant of either sign and a signed pair of exponentials matches
   ``A exp(-x / tau)`` for ``tau`` in 5-30 degrees within 5.3 % of ``A`` (with non-negative
   coefficients, a linear term instead of the second exponential or a quadratic Chebyshev
   basis, the worst error is 10-50 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
import torch
from scipy.optimize import nnls
from threadpoolctl import threadpool_limits

from xrdpipe import store
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation.estimators import REGRESSORS, make_regressor, regressor_params
from xrdpipe.evaluation.metrics import fraction_metrics
from xrdpipe.patterns.config import MixtureConfig, ProfileConfig
from xrdpipe.patterns.datasets import load_peaks
from xrdpipe.patterns.mixtures import MixtureSampler, PeakArrays, mixture_intensities
from xrdpipe.patterns.render import render_clean, two_theta_grid
from xrdpipe.training.splits import bin_patterns

__all__ = [
    "BASELINES",
    "BaselineResult",
    "background_basis",
    "bin_patterns",
    "dictionary_profiles",
    "gram_nnls",
    "nnls_fractions",
    "render_dictionary",
    "run_fraction_baselines",
    "to_fractions",
    "training_mixtures",
    "uniform_guess_tvd",
]

NNLS_BASELINES = ("nnls_reference", "nnls_strained")
"""The physics baselines."""
BASELINES = REGRESSORS + NNLS_BASELINES
"""Every baseline of :func:`run_fraction_baselines`, in run order."""
DEFAULT_BINS = 450
"""Regressor inputs: patterns averaged to about 450 points."""
MAX_DICTIONARY_STRAINS = 50
"""Most strain conditions per material in the ``nnls_strained`` dictionary."""
DICTIONARY_SIZES_NM = (0.1, 0.5, 0.9)
"""Quantiles (log scale) of the profile's crystallite-size range rendered per dictionary entry."""
SCIPY_MAX_COLUMNS = 256
"""``nnls_fractions(solver="auto")`` uses ``scipy.optimize.nnls`` up to this many columns."""
NNLS_TOL = 1e-12
"""Relative optimality tolerance of :func:`gram_nnls` (times the largest Gram entry and n)."""
BACKGROUND_DECAY_QUANTILES = (0.1, 0.75)
"""Where (log scale) in ``background_decay_deg`` the two exponential columns decay."""


@dataclass
class BaselineResult:
    """One baseline's fit and its score on the test mixtures.

    Attributes:
        name: one of :data:`BASELINES`.
        params: its settings (scikit-learn parameters, dictionary sizes), flat and loggable.
        tvd_mean: mean total variation distance over the test mixtures.
        tvd_std: its standard deviation.
        mae: mean absolute error over all (mixture, phase) entries.
        fit_s: fitting time, seconds (0 for NNLS: nothing is fitted).
        predict_s: prediction time for the whole test set, seconds.
        predictions: ``(n_test, N)`` predicted fractions (>= 0, rows sum to 1).
        tvd_sem: standard error of ``tvd_mean``.
        rmse: root-mean-square error over all entries.
    """

    name: str
    params: dict[str, Any]
    tvd_mean: float
    tvd_std: float
    mae: float
    fit_s: float
    predict_s: float
    predictions: np.ndarray
    tvd_sem: float = 0.0
    rmse: float = 0.0

    def metrics(self) -> dict[str, float]:
        """The scalar results, for logging."""
        return {
            "tvd_mean": self.tvd_mean,
            "tvd_std": self.tvd_std,
            "tvd_sem": self.tvd_sem,
            "mae": self.mae,
            "rmse": self.rmse,
            "fit_s": self.fit_s,
            "predict_s": self.predict_s,
        }


def to_fractions(values: np.ndarray) -> np.ndarray:
    """Raw outputs ``(n, N)`` to fractions: clip below 0, rows renormalised (zero rows uniform)."""
    out = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    total = out.sum(axis=1, keepdims=True)
    uniform = np.full_like(out, 1.0 / out.shape[1])
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), uniform)


# --- NNLS -------------------------------------------------------------------------------------


def background_decays(profile: ProfileConfig) -> tuple[float, ...]:
    """Decay lengths (degrees) of the exponential background columns for ``profile``."""
    low, high = profile.background_decay_deg
    return tuple(low * (high / low) ** q for q in BACKGROUND_DECAY_QUANTILES)


def background_basis(two_theta: np.ndarray, decays_deg: Sequence[float]) -> np.ndarray:
    """Background columns ``(n_points, 1 + len(decays_deg))``.

    A constant and ``exp(-(2theta - 2theta_min) / tau)`` for each decay length ``tau``
    (degrees).
    """
    tt = np.asarray(two_theta, dtype=np.float64)
    x = tt - tt.min()
    return np.stack([np.ones_like(x)] + [np.exp(-x / tau) for tau in decays_deg], axis=1)


def gram_nnls(
    gram: np.ndarray, rhs: np.ndarray, max_iter: int | None = None, tol: float | None = None
) -> np.ndarray:
    """Lawson-Hanson NNLS on the normal equations (Bro and de Jong's fast NNLS, 1997).

    Minimises ``||A c - y||`` over ``c >= 0`` given only ``gram = A^T A`` and
    ``rhs = A^T y``: each step costs ``O(n_cols * n_active)`` instead of
    ``O(n_points * n_cols)``, which makes dictionaries of thousands of columns affordable.

    Args:
        gram: ``(n, n)`` symmetric positive semi-definite.
        rhs: ``(n,)``.
        max_iter: most outer iterations (default ``3 n``).
        tol: optimality tolerance on the gradient (default :data:`NNLS_TOL` times the
            largest Gram entry and ``n``).

    Returns:
        ``(n,)`` non-negative coefficients.
    """
    n = rhs.shape[0]
    if tol is None:
        tol = NNLS_TOL * max(1.0, float(np.abs(gram).max())) * n
    max_iter = 3 * n if max_iter is None else max_iter
    active = np.zeros(n, dtype=bool)
    x = np.zeros(n)
    w = rhs.copy()

    def solve(mask: np.ndarray) -> np.ndarray:
        s = np.zeros(n)
        idx = np.flatnonzero(mask)
        sub = gram[np.ix_(idx, idx)]
        try:
            s[idx] = scipy.linalg.solve(sub, rhs[idx], assume_a="pos", check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            s[idx] = np.linalg.lstsq(sub, rhs[idx], rcond=None)[0]
        return s

    for _ in range(max_iter):
        free = ~active
        if not free.any() or w[free].max() <= tol:
            break
        active[np.flatnonzero(free)[np.argmax(w[free])]] = True
        s = solve(active)
        while active.any() and s[active].min() <= 0:
            bad = active & (s <= 0)
            alpha = np.min(x[bad] / (x[bad] - s[bad]))
            x = x + alpha * (s - x)
            active &= x > tol
            x[~active] = 0.0
            s = solve(active)
        x = s
        idx = np.flatnonzero(active)
        w = rhs - x[idx] @ gram[idx]  # rows of the symmetric Gram: contiguous
    return np.clip(x, 0.0, None)


def nnls_fractions(
    patterns: np.ndarray,
    dictionary: np.ndarray,
    background: np.ndarray | None = None,
    solver: Literal["auto", "scipy", "gram"] = "auto",
) -> np.ndarray:
    """Phase fractions by non-negative least squares against single-phase profiles.

    Solves ``min ||D c + B g - y||`` with ``c >= 0`` (material columns) and ``g`` free
    (background columns, eliminated by projecting onto their orthogonal complement), per
    pattern; a material's coefficient is the sum over its columns. Columns are scaled to a
    maximum of 1 for the fit and the coefficients scaled back.

    Args:
        patterns: ``(n, n_points)`` mixtures.
        dictionary: ``(N, S, n_points)`` profiles, ``S`` columns per material, each scaled as
            the phase at fraction 1 (see the module docstring).
        background: ``(n_points, B)`` background columns, or None.
        solver: ``scipy`` (``scipy.optimize.nnls`` on the full system), ``gram``
            (:func:`gram_nnls` on the normal equations, for large dictionaries) or ``auto``
            (``scipy`` up to :data:`SCIPY_MAX_COLUMNS` columns).

    Returns:
        ``(n, N)`` fractions (>= 0, rows sum to 1; uniform where no material fits).
    """
    y = np.asarray(patterns, dtype=np.float64)
    d = np.asarray(dictionary, dtype=np.float64)
    assert d.ndim == 3 and d.shape[2] == y.shape[1], (
        f"dictionary {d.shape} must be (N, S, {y.shape[1]})"
    )
    if solver not in ("auto", "scipy", "gram"):
        raise ConfigError(f"solver {solver!r} is not one of ['auto', 'scipy', 'gram']")
    n_mat, n_col = d.shape[0], d.shape[1]
    a = d.reshape(n_mat * n_col, -1).T
    scale = np.abs(a).max(axis=0)
    used = scale > 0
    a = a[:, used] / scale[used]
    owner = np.repeat(np.arange(n_mat), n_col)[used]
    if background is not None:
        q, _ = np.linalg.qr(np.asarray(background, dtype=np.float64))
        a = a - q @ (q.T @ a)
        y = y - (y @ q) @ q.T
    if solver == "auto":
        solver = "scipy" if a.shape[1] <= SCIPY_MAX_COLUMNS else "gram"
    coef = np.zeros((y.shape[0], n_mat))
    if solver == "gram":
        gram = a.T @ a
        rhs = y @ a
        tol = NNLS_TOL * max(1.0, float(np.abs(gram).max())) * gram.shape[0]
        solutions = (gram_nnls(gram, r, tol=tol) for r in rhs)
    else:
        solutions = (nnls(a, r, maxiter=50 * a.shape[1])[0] for r in y)
    for i, c in enumerate(solutions):
        np.add.at(coef[i], owner, c / scale[used])
    return to_fractions(coef)


def render_dictionary(
    peaks: PeakArrays,
    profile: ProfileConfig,
    wavelength: float,
    fraction_mode: str = "intensity",
    crystallite_sizes_nm: Sequence[float] | None = None,
) -> np.ndarray:
    """Single-phase profiles as they enter a mixture at fraction 1, with the project's renderer.

    Args:
        peaks: ``(N, S, P)`` peak lists (materials in target order).
        profile: the grid and the fixed ``clean_eta``.
        wavelength: angstrom.
        fraction_mode: ``intensity`` or ``weight`` (as in :class:`MixtureConfig`).
        crystallite_sizes_nm: sizes rendered per (material, strain); default
            :data:`DICTIONARY_SIZES_NM` quantiles (log scale) of ``profile.crystallite_size_nm``.

    Returns:
        ``(N, S * len(sizes), n_points)`` float32, intensity per degree (not normalised).
    """
    if crystallite_sizes_nm is None:
        low, high = profile.crystallite_size_nm
        crystallite_sizes_nm = [low * (high / low) ** q for q in DICTIONARY_SIZES_NM]
    n_mat, n_str = peaks.n_materials, peaks.n_strains
    ones = torch.ones(peaks.two_theta.shape[:2], device=peaks.two_theta.device)
    sticks = mixture_intensities(
        peaks.intensity,
        ones,
        fraction_mode,  # type: ignore[arg-type]
        intensity_raw=peaks.intensity_raw,
        volume=peaks.volume,
        density=peaks.density,
    )
    flat = n_mat * n_str
    d_spacing = None if peaks.d_spacing is None else peaks.d_spacing.reshape(flat, -1)
    rendered = []
    for size in crystallite_sizes_nm:
        cfg = profile.model_copy(update={"clean_crystallite_size_nm": float(size)})
        y = render_clean(
            peaks.two_theta.reshape(flat, -1),
            sticks.reshape(flat, -1),
            peaks.peak_mask.reshape(flat, -1),
            cfg,
            device=peaks.two_theta.device,
            wavelength=wavelength,
            d_spacing=d_spacing,
            normalize=False,
        )
        rendered.append(y.reshape(n_mat, n_str, -1).cpu().numpy())
    return np.concatenate(rendered, axis=1).astype(np.float32)


def dictionary_profiles(
    store_path: store.StorePath,
    materials: Sequence[str],
    profile: ProfileConfig,
    split: str = "reference",
    fraction_mode: str = "intensity",
    strain_index: np.ndarray | None = None,
    max_strains: int = MAX_DICTIONARY_STRAINS,
    crystallite_sizes_nm: Sequence[float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """An NNLS dictionary from a store: ``reference`` (unstrained) or ``train`` strains.

    Args:
        store_path: the pattern store.
        materials: COD ids of the N materials, in target order.
        profile: grid and peak shape.
        split: ``reference`` (``nnls_reference``) or ``train`` (``nnls_strained``).
        fraction_mode: the mixtures' fraction mode.
        strain_index: positions within the split to choose from (e.g. the 60 % training
            part); default all.
        max_strains: at most this many conditions per material, drawn without replacement
            with ``numpy.random.default_rng(seed)`` (sorted).
        crystallite_sizes_nm: see :func:`render_dictionary`.
        seed: seeds the choice of strain conditions.

    Returns:
        ``(N, S * n_sizes, n_points)`` float32.
    """
    loaded = load_peaks(store_path, split, [str(m) for m in materials])
    available = (
        np.arange(loaded.peaks.n_strains) if strain_index is None else np.asarray(strain_index)
    )
    if len(available) > max_strains:
        rng = np.random.default_rng(seed)
        available = np.sort(rng.choice(available, size=max_strains, replace=False))
    peaks = loaded.peaks.select_strains(available)
    return render_dictionary(peaks, profile, loaded.wavelength, fraction_mode, crystallite_sizes_nm)


# --- training mixtures and the comparison ----------------------------------------------------


def training_mixtures(
    store_path: store.StorePath,
    materials: Sequence[str],
    mix_cfg: MixtureConfig,
    profile: ProfileConfig,
    n: int = 20_000,
    seed: int = 0,
    strain_index: np.ndarray | None = None,
    n_bins: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Training mixtures for the regressors, drawn with the project's :class:`MixtureSampler`.

    Args:
        store_path: the pattern store.
        materials: COD ids of the N materials, in target order.
        mix_cfg: N, K, fraction mode, phase draw; drawn in ``mix_cfg.batch_size`` batches.
        profile: peak shape, noise and background (as for the CNN).
        n: number of mixtures.
        seed: seed of the sampler.
        strain_index: positions within the training strains to draw from (the CNN's 60 %
            part from :func:`~xrdpipe.patterns.mixtures.split_train_validation`); default all.
        n_bins: average each batch to about ``n_bins`` points (:func:`bin_patterns`) as it is
            drawn, to keep memory small; default full resolution.
        device: rendering device.

    Returns:
        ``patterns (n, n_points or bins)`` float32 and ``phase_fractions (n, N)`` float32.
    """
    if n < 1:
        raise ConfigError(f"n {n} must be at least 1")
    ids = [str(m) for m in materials]
    loaded = load_peaks(
        store_path,
        "train",
        ids,
        device,
        orientation=profile.needs_orientation,
        absorption=mix_cfg.particle_radius_um is not None,
    )
    arrays = loaded.peaks
    if strain_index is not None:
        arrays = arrays.select_strains(np.asarray(strain_index))
    sampler = MixtureSampler(
        arrays, mix_cfg, profile, seed=seed, device=device, wavelength=loaded.wavelength
    )
    xs, ys = [], []
    for start in range(0, n, mix_cfg.batch_size):
        patterns, fractions, _ = sampler.sample(min(mix_cfg.batch_size, n - start))
        x = patterns.cpu().numpy()
        xs.append(bin_patterns(x, n_bins) if n_bins else x)
        ys.append(fractions.cpu().numpy())
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def _result(
    name: str,
    params: dict[str, Any],
    pred: np.ndarray,
    true: np.ndarray,
    fit_s: float,
    predict_s: float,
) -> BaselineResult:
    m = fraction_metrics(pred, true)
    return BaselineResult(
        name=name,
        params=params,
        tvd_mean=m["tvd_mean"],
        tvd_std=m["tvd_std"],
        mae=m["mae"],
        fit_s=fit_s,
        predict_s=predict_s,
        predictions=pred.astype(np.float32),
        tvd_sem=m["tvd_sem"],
        rmse=m["rmse"],
    )


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def run_fraction_baselines(
    train_x: Any,
    train_y: Any,
    test_x: Any,
    test_y: Any,
    reference_profiles: np.ndarray | None,
    strained_profiles: np.ndarray | None,
    names: Sequence[str] | None = None,
    n_bins: int = DEFAULT_BINS,
    seed: int = 0,
    *,
    two_theta: np.ndarray | None = None,
    profile: ProfileConfig | None = None,
    progress: Callable[[str], None] | None = None,
    blas_threads: int | None = 1,
) -> list[BaselineResult]:
    """Fit every baseline on the same training mixtures and score it on the same test mixtures.

    Args:
        train_x: ``(n, n_points)`` training patterns (or already binned to ``n_bins``
            windows by :func:`bin_patterns`, e.g. by :func:`training_mixtures`).
        train_y: ``(n, N)`` training fractions.
        test_x: ``(m, n_points)`` test patterns at full resolution (NNLS fits them there).
        test_y: ``(m, N)`` true test fractions.
        reference_profiles: ``(N, S, n_points)`` ``nnls_reference`` dictionary
            (:func:`dictionary_profiles` with ``split="reference"``); None skips it.
        strained_profiles: ``(N, S, n_points)`` ``nnls_strained`` dictionary; None skips it.
        names: baselines to run (default all of :data:`BASELINES` that have their inputs).
        n_bins: regressor inputs averaged to about this many points.
        seed: seeds the regressors.
        two_theta: the grid of ``test_x``, degrees (default ``profile``'s grid).
        profile: the mixtures' profile settings: grid and background decay range (default
            :class:`ProfileConfig` with ``n_points = test_x.shape[1]``).
        progress: called with each baseline's name before it runs.
        blas_threads: BLAS / OpenMP threads while fitting and predicting (``threadpoolctl``;
            None: the libraries' default). One by default: on a shared two-core machine the
            default threads oversubscribe it and small matrix products (the MLP) run ten
            times slower.

    Returns:
        One :class:`BaselineResult` per baseline, in :data:`BASELINES` order.

    Raises:
        ConfigError: an unknown baseline, a missing dictionary, or mismatched shapes.
    """
    tr_x, tr_y = _numpy(train_x).astype(np.float32), _numpy(train_y).astype(np.float64)
    te_x, te_y = _numpy(test_x).astype(np.float32), _numpy(test_y).astype(np.float64)
    if tr_y.shape[1] != te_y.shape[1]:
        raise ConfigError(f"train_y has {tr_y.shape[1]} phases but test_y has {te_y.shape[1]}")
    dictionaries = {"nnls_reference": reference_profiles, "nnls_strained": strained_profiles}
    if names is None:
        names = [n for n in BASELINES if dictionaries.get(n, 0) is not None]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"baselines {unknown} are not among {list(BASELINES)}")
    profile = profile or ProfileConfig(n_points=te_x.shape[1])
    if two_theta is None:
        two_theta = two_theta_grid(profile).numpy()
    if len(two_theta) != te_x.shape[1]:
        raise ConfigError(f"two_theta has {len(two_theta)} points, test_x {te_x.shape[1]}")
    results = []
    with threadpool_limits(limits=blas_threads):
        for name in [n for n in BASELINES if n in names]:
            if progress is not None:
                progress(name)
            results.append(
                _run_one(
                    name, tr_x, tr_y, te_x, te_y, dictionaries, n_bins, seed, two_theta, profile
                )
            )
    return results


def _run_one(
    name: str,
    tr_x: np.ndarray,
    tr_y: np.ndarray,
    te_x: np.ndarray,
    te_y: np.ndarray,
    dictionaries: dict[str, np.ndarray | None],
    n_bins: int,
    seed: int,
    two_theta: np.ndarray,
    profile: ProfileConfig,
) -> BaselineResult:
    """Fit (regressors) and score one baseline of :func:`run_fraction_baselines`."""
    if name in REGRESSORS:
        te_b = bin_patterns(te_x, n_bins)
        tr_b = tr_x if tr_x.shape[1] == te_b.shape[1] else bin_patterns(tr_x, n_bins)
        if tr_b.shape[1] != te_b.shape[1]:
            raise ConfigError(
                f"train_x bins to {tr_b.shape[1]} points but test_x to {te_b.shape[1]}"
            )
        model = make_regressor(name, seed)
        t0 = time.perf_counter()
        model.fit(tr_b, tr_y)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = np.asarray(model.predict(te_b)).reshape(len(te_b), -1)
        predict_s = time.perf_counter() - t0
        params = {"n_bins": int(te_b.shape[1]), **regressor_params(model)}
        return _result(name, params, to_fractions(raw), te_y, fit_s, predict_s)
    dictionary = dictionaries[name]
    if dictionary is None:
        raise ConfigError(f"baseline {name!r} needs its dictionary of profiles")
    if dictionary.shape[0] != te_y.shape[1]:
        raise ConfigError(
            f"{name} dictionary has {dictionary.shape[0]} materials, test_y {te_y.shape[1]}"
        )
    decays = background_decays(profile)
    t0 = time.perf_counter()
    pred = nnls_fractions(te_x, dictionary, background_basis(two_theta, decays))
    predict_s = time.perf_counter() - t0
    params = {
        "columns_per_material": int(dictionary.shape[1]),
        "background": "constant + exp(-(2theta - 2theta_min) / tau), free signs",
        "background_decays_deg": [round(float(t), 3) for t in decays],
        "solver": "scipy"
        if dictionary.shape[0] * dictionary.shape[1] <= SCIPY_MAX_COLUMNS
        else "gram",
    }
    return _result(name, params, pred, te_y, 0.0, predict_s)


def uniform_guess_tvd(test_y: Any) -> float:
    """Mean TVD of predicting ``1/N`` for every phase (the floor every baseline must beat)."""
    y = _numpy(test_y).astype(np.float64)
    return fraction_metrics(np.full_like(y, 1.0 / y.shape[1]), y)["tvd_mean"]
