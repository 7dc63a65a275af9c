"""Tests of the data engine: renderer vs a naive float64 reference, mixtures, augmentations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from xrdpipe.errors import ConfigError
from xrdpipe.patterns import (
    AugmentConfig,
    MixtureConfig,
    MixtureDataset,
    MixtureSampler,
    PeakArrays,
    ProfileConfig,
    augment_peak_list,
    augment_profiles,
    eliminate_peaks,
    find_peaks,
    make_fixed_mixture_set,
    mixture_intensities,
    render_clean,
    render_naive,
    render_peaks,
    render_profiles,
    scale_peaks,
    scherrer_fwhm_deg,
    shift_patterns,
    split_train_validation,
    strain_patterns,
)
from xrdpipe.patterns.augment import local_baseline, shift_by_points
from xrdpipe.patterns.mixtures import tensors_sha256

CFG = ProfileConfig()
MAX_ERROR = 5e-3  # of the pattern maximum
RMS_ERROR = 1e-3


# ---------------------------------------------------------------- fixtures


def _xrd(structure):
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    calc = XRDCalculator(wavelength="CuKa")
    scaled = calc.get_pattern(structure, scaled=True, two_theta_range=(10, 80))
    raw = calc.get_pattern(structure, scaled=False, two_theta_range=(10, 80))
    return (
        np.asarray(scaled.x),
        np.asarray(scaled.y),
        np.asarray(raw.y),
        np.asarray(scaled.d_hkls),
    )


@pytest.fixture(scope="module")
def real_phases():
    """NaCl (Fm-3m, a = 5.64) and CsCl (Pm-3m, a = 4.12) from pymatgen's XRDCalculator."""
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    cscl = Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    phases = []
    for s in (nacl, cscl):
        tt, inten, raw, d = _xrd(s)
        phases.append(
            {"tt": tt, "I": inten, "raw": raw, "d": d, "V": s.volume, "rho": float(s.density)}
        )
    return phases


def _real_arrays(phases) -> PeakArrays:
    n_peaks = max(len(p["tt"]) for p in phases)
    shape = (len(phases), 1, n_peaks)
    arrays = {k: np.zeros(shape) for k in ("tt", "I", "raw", "d")}
    mask = np.zeros(shape, bool)
    for m, p in enumerate(phases):
        k = len(p["tt"])
        for key in arrays:
            arrays[key][m, 0, :k] = p[key]
        mask[m, 0, :k] = True
    return PeakArrays.from_arrays(
        arrays["tt"],
        arrays["I"],
        mask,
        intensity_raw=arrays["raw"],
        d_spacing=arrays["d"],
        volume=np.array([[p["V"]] for p in phases]),
        density=np.array([[p["rho"]] for p in phases]),
    )


def _synthetic_arrays(
    n_materials: int, n_strains: int, n_peaks: int, seed: int = 0, ragged: bool = True
) -> PeakArrays:
    """Random peak lists with padding at the end, strained copies shifted slightly."""
    rng = np.random.default_rng(seed)
    base = np.sort(rng.uniform(10.5, 79.5, (n_materials, 1, n_peaks)), axis=-1)
    strain = rng.uniform(-0.3, 0.3, (n_materials, n_strains, 1))
    tt = base + strain
    raw = rng.lognormal(3.0, 1.5, (n_materials, n_strains, n_peaks))
    inten = 100.0 * raw / raw.max(axis=-1, keepdims=True)
    count = rng.integers(n_peaks // 2, n_peaks + 1, (n_materials, n_strains)) if ragged else None
    mask = np.ones(tt.shape, bool)
    if ragged:
        mask = np.arange(n_peaks)[None, None, :] < count[..., None]
    wl = 1.54184
    d = wl / (2.0 * np.sin(np.deg2rad(tt) / 2.0))
    arrays = [np.where(mask, a, 0.0) for a in (tt, inten, raw, d)]
    return PeakArrays.from_arrays(
        arrays[0],
        arrays[1],
        mask,
        intensity_raw=arrays[2],
        d_spacing=arrays[3],
        volume=rng.uniform(50, 800, (n_materials, n_strains)),
        density=rng.uniform(1.5, 8.0, (n_materials, n_strains)),
    )


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- renderer


@pytest.mark.parametrize("n_peaks", [50, 300, 800])
def test_renderer_matches_naive_reference(n_peaks: int) -> None:
    """Windowed + FFT-tail renderer vs every peak on the whole grid in float64."""
    rng = np.random.default_rng(n_peaks)
    n_samples, n_phases = 6, 3
    per_phase = n_peaks // n_phases
    tt = rng.uniform(10.0, 80.0, (n_samples, n_phases * per_phase)).astype(np.float32)
    inten = rng.lognormal(2.0, 1.5, tt.shape).astype(np.float32)
    mask = rng.random(tt.shape) < 0.95
    phase = np.repeat(np.arange(n_phases), per_phase)[None, :].repeat(n_samples, 0)
    # the extremes of both ranges plus random values, per (sample, phase)
    eta = rng.uniform(0.1, 0.9, (n_samples, n_phases))
    size = rng.uniform(10.0, 100.0, (n_samples, n_phases))
    eta[0], size[0] = 0.9, 10.0  # broadest, most Lorentzian
    eta[1], size[1] = 0.1, 100.0  # narrowest, most Gaussian
    eta[2], size[2] = [0.9, 0.1, 0.5], [100.0, 10.0, 30.0]
    ref = render_naive(
        tt, inten, mask, np.take_along_axis(eta, phase, 1), np.take_along_axis(size, phase, 1), CFG
    )
    ref /= ref.max(axis=1, keepdims=True)
    out = render_profiles(
        tt,
        inten,
        mask,
        CFG,
        _gen(),
        "cpu",
        phase_index=torch.as_tensor(phase),
        eta=torch.as_tensor(eta, dtype=torch.float32),
        crystallite_size_nm=torch.as_tensor(size, dtype=torch.float32),
        noise=False,
        background=False,
    )
    err = out.double().numpy() - ref
    assert np.abs(err).max() <= MAX_ERROR
    assert np.sqrt((err**2).mean(axis=1)).max() <= RMS_ERROR
    # in practice far better than the bar
    assert np.abs(err).max() < 1e-3


def test_real_nacl_matches_reference_and_position(real_phases) -> None:
    nacl = real_phases[0]
    tt, inten = nacl["tt"][None].astype(np.float32), nacl["I"][None].astype(np.float32)
    mask = np.ones(tt.shape, bool)
    out = render_clean(tt, inten, mask, CFG)[0].numpy()
    ref = render_naive(tt, inten, mask, CFG.clean_eta, CFG.clean_crystallite_size_nm, CFG)[0]
    assert np.abs(out - ref / ref.max()).max() < 1e-3
    grid = np.linspace(CFG.two_theta_min, CFG.two_theta_max, CFG.n_points)
    # strongest NaCl reflection is (200) at 31.73 degrees (Cu K-alpha, a = 5.64)
    assert grid[out.argmax()] == pytest.approx(31.73, abs=0.01)


def _fwhm(grid: np.ndarray, y: np.ndarray) -> float:
    half = y.max() / 2.0
    above = np.nonzero(y >= half)[0]
    i, j = above[0], above[-1]
    left = np.interp(half, [y[i - 1], y[i]], [grid[i - 1], grid[i]])
    right = np.interp(half, [y[j + 1], y[j]], [grid[j + 1], grid[j]])
    return right - left


@pytest.mark.parametrize("eta", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("size", [10.0, 60.0])
def test_single_peak_scherrer_fwhm(eta: float, size: float) -> None:
    fine = ProfileConfig(two_theta_min=40.0, two_theta_max=50.0, n_points=20001)  # 0.0005 deg
    y = render_peaks(
        torch.tensor([[45.0]]),
        torch.tensor([[10.0]]),
        torch.tensor([[True]]),
        torch.tensor(eta),
        torch.tensor(size),
        fine,
    )[0].numpy()
    grid = np.linspace(40.0, 50.0, 20001)
    expected = math.degrees(0.9 * 0.154184 / (size * math.cos(math.radians(22.5))))
    assert scherrer_fwhm_deg(np.array(45.0), size, 1.54184, 0.9) == pytest.approx(expected)
    assert _fwhm(grid, y) == pytest.approx(expected, rel=0.01)
    assert grid[y.argmax()] == pytest.approx(45.0, abs=2 * fine.step_deg)


@pytest.mark.parametrize(("eta", "size"), [(0.5, 50.0), (0.9, 100.0), (0.1, 10.0)])
def test_single_peak_area_equals_stick(eta: float, size: float) -> None:
    y = render_peaks(
        torch.tensor([[45.0]]),
        torch.tensor([[37.5]]),
        torch.tensor([[True]]),
        torch.tensor(eta),
        torch.tensor(size),
        CFG,
    )[0]
    assert float(y.sum()) * CFG.step_deg == pytest.approx(37.5, rel=0.01)


def test_position_is_discretised_to_the_grid() -> None:
    y = render_clean(np.array([[30.0 + 0.4 * CFG.step_deg]]), np.array([[1.0]]), [[True]], CFG)
    assert int(y[0].argmax()) == round((30.0 - 10.0) / CFG.step_deg)
    assert float(y[0].max()) == pytest.approx(1.0)


def test_zero_shift_and_ka_doublet() -> None:
    shifted = ProfileConfig(zero_shift_deg=(0.5, 0.5))
    peak = (np.array([[40.0]]), np.array([[5.0]]), np.array([[True]]))
    plain = render_profiles(*peak, CFG, _gen(), noise=False, background=False)
    moved = render_profiles(*peak, shifted, _gen(), noise=False, background=False)
    assert int(moved.argmax()) - int(plain.argmax()) == round(0.5 / CFG.step_deg)

    doublet = ProfileConfig(ka_doublet=True, clean_crystallite_size_nm=100.0, clean_eta=0.1)
    d = np.array([[1.54056 / (2 * math.sin(math.radians(35.0)))]])  # K-alpha1 at 70 degrees
    y = render_clean(np.array([[70.0]]), np.array([[3.0]]), [[True]], doublet, d_spacing=d)[0]
    area = (
        render_clean(
            np.array([[70.0]]), np.array([[3.0]]), [[True]], doublet, d_spacing=d, normalize=False
        )[0].sum()
        * doublet.step_deg
    )
    grid = np.linspace(10, 80, doublet.n_points)
    ka2 = 2 * math.degrees(math.asin(1.54439 / (2 * d[0, 0])))
    assert grid[int(y.argmax())] == pytest.approx(70.0, abs=doublet.step_deg)
    i2 = int(np.argmin(np.abs(grid - ka2)))
    assert float(y[i2]) == pytest.approx(0.5, abs=0.08)  # K-alpha2 at half height
    assert float(area) == pytest.approx(3.0, rel=0.01)
    with pytest.raises(ValueError, match="d_spacing"):
        render_clean(np.array([[70.0]]), np.array([[3.0]]), [[True]], doublet)


def test_noise_and_background_are_in_range_and_seeded() -> None:
    rng = np.random.default_rng(1)
    tt, inten = rng.uniform(10, 80, (16, 100)), rng.uniform(1, 100, (16, 100))
    mask = np.ones(tt.shape, bool)
    a = render_profiles(tt, inten, mask, CFG, _gen(3))
    b = render_profiles(tt, inten, mask, CFG, _gen(3))
    c = render_profiles(tt, inten, mask, CFG, _gen(4))
    assert a.dtype == torch.float32 and a.shape == (16, CFG.n_points)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a.amin(1), torch.zeros(16)) and torch.allclose(a.amax(1), torch.ones(16))
    # noise is 3-7 % of the maximum: the high-frequency residual tells its size
    clean = render_profiles(tt, inten, mask, CFG, _gen(3), noise=False, background=False)
    assert float((a - clean).diff(dim=1).std(dim=1).min()) > 0.03 * math.sqrt(2) * 0.5


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError):
        ProfileConfig(eta_range=(0.5, 1.5))
    with pytest.raises(ValidationError):
        ProfileConfig(unknown=1)
    with pytest.raises(ValidationError):
        MixtureConfig(n_materials=2, max_phases=3, phase_draw="distinct")
    assert MixtureConfig(n_materials=5, max_phases=7).phase_draw == "pool"  # grid cell N=5, K=7
    with pytest.raises(ValidationError):
        ProfileConfig(two_theta_min=50.0, two_theta_max=20.0)


# ---------------------------------------------------------------- mixtures


def test_mixture_fractions_and_draw_rules() -> None:
    peaks = _synthetic_arrays(5, 7, 40)
    cfg = MixtureConfig(n_materials=5, max_phases=3, batch_size=256)
    patterns, fractions, extras = MixtureSampler(peaks, cfg, seed=1, device="cpu").sample()
    assert patterns.shape == (256, CFG.n_points) and patterns.dtype == torch.float32
    assert fractions.shape == (256, 5) and fractions.dtype == torch.float32
    assert torch.allclose(fractions.sum(1), torch.ones(256))
    assert bool((fractions >= 0).all())
    k = extras["n_phases"]
    assert set(k.tolist()) == {1, 2, 3}
    # pool draw: k (material, strain) phases; a material drawn twice sums into one output
    distinct = torch.tensor(
        [len(set(m[:n].tolist())) for m, n in zip(extras["materials"], k, strict=True)]
    )
    assert torch.equal((fractions > 0).sum(1), distinct)
    assert bool((distinct < k).any())  # repeats happen in the pool draw
    assert bool((extras["strains"] < 7).all())
    cfg_d = MixtureConfig(n_materials=5, max_phases=3, batch_size=256, phase_draw="distinct")
    _, fractions_d, extras_d = MixtureSampler(peaks, cfg_d, seed=1, device="cpu").sample()
    assert torch.equal((fractions_d > 0).sum(1), extras_d["n_phases"])
    eta, size = extras["eta"], extras["crystallite_size_nm"]
    assert bool(((eta >= 0.1) & (eta <= 0.9)).all() and ((size >= 10) & (size <= 100)).all())


def test_weight_fraction_textbook_ratio(real_phases) -> None:
    """50:50 by weight: I_a / I_b = (w_a/rho_a)/(w_b/rho_b) * V_b^2/V_a^2 * raw_a/raw_b."""
    nacl, cscl = real_phases
    arrays = _real_arrays(real_phases)
    fractions = torch.tensor([[0.5, 0.5]])
    sticks = mixture_intensities(
        arrays.intensity[:, 0].unsqueeze(0),
        fractions,
        "weight",
        intensity_raw=arrays.intensity_raw[:, 0].unsqueeze(0),
        volume=arrays.volume[:, 0].unsqueeze(0),
        density=arrays.density[:, 0].unsqueeze(0),
    )[0]
    ia, ib = int(np.argmax(nacl["raw"])), int(np.argmax(cscl["raw"]))
    textbook = ((0.5 / nacl["rho"]) / (0.5 / cscl["rho"]) * cscl["V"] ** 2 / nacl["V"] ** 2) * (
        nacl["raw"][ia] / cscl["raw"][ib]
    )
    # rendered: integrate the two strongest reflections (Gaussian shape, isolated)
    shape = ProfileConfig(clean_eta=0.0, clean_crystallite_size_nm=100.0)
    y = render_clean(
        arrays.two_theta[:, 0].reshape(1, -1),
        sticks.reshape(1, -1),
        arrays.peak_mask[:, 0].reshape(1, -1),
        shape,
        normalize=False,
    )[0].double()
    grid = np.linspace(10, 80, shape.n_points)

    def area(center: float) -> float:
        window = np.abs(grid - center) < 0.3
        return float(y[window].sum()) * shape.step_deg

    assert area(nacl["tt"][ia]) / area(cscl["tt"][ib]) == pytest.approx(textbook, rel=0.01)
    # the sampler applies the same physics per drawn mixture
    sampler = MixtureSampler(
        arrays, MixtureConfig(n_materials=2, max_phases=2, fraction_mode="weight"), device="cpu"
    )
    draw = sampler.draw(64)
    two = draw.extras["n_phases"] == 2
    n_peaks = arrays.max_peaks
    w = draw.extras["fractions"]
    mats = draw.extras["materials"]
    top = draw.intensity.view(64, 2, n_peaks).double().amax(dim=2)
    raw_max = arrays.intensity_raw[:, 0].double().amax(1)
    expect = (
        w.double() / arrays.density[mats, 0] / arrays.volume[mats, 0].double() ** 2
    ) * raw_max[mats]
    ratio = top[two, 0] / top[two, 1]
    assert torch.allclose(ratio, expect[two, 0] / expect[two, 1], rtol=1e-4)
    assert torch.allclose(draw.phase_fractions.sum(1), torch.ones(64, dtype=torch.float32))


def test_weight_mode_needs_raw_arrays() -> None:
    peaks = _synthetic_arrays(2, 3, 10)
    bare = PeakArrays.from_arrays(peaks.two_theta, peaks.intensity, peaks.peak_mask)
    with pytest.raises(ConfigError, match="weight"):
        MixtureSampler(bare, MixtureConfig(n_materials=2, max_phases=2, fraction_mode="weight"))
    with pytest.raises(ConfigError, match="materials"):
        MixtureSampler(peaks, MixtureConfig(n_materials=3, max_phases=2))


def test_sampler_is_deterministic() -> None:
    peaks = _synthetic_arrays(4, 5, 30)
    cfg = MixtureConfig(n_materials=4, max_phases=3, batch_size=32)
    a = MixtureSampler(peaks, cfg, seed=7, device="cpu").sample()
    b = MixtureSampler(peaks, cfg, seed=7, device="cpu").sample()
    c = MixtureSampler(peaks, cfg, seed=8, device="cpu").sample()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_dataloader_workers_distinct_and_reproducible() -> None:
    peaks = _synthetic_arrays(4, 5, 30)
    cfg = MixtureConfig(n_materials=4, max_phases=2, batch_size=8)
    small = ProfileConfig(n_points=1001)

    def run() -> list[tuple[torch.Tensor, torch.Tensor]]:
        dataset = MixtureDataset(peaks, cfg, small, seed=11, n_batches=2)
        # forkserver: by now the test process runs threads (Prefect, Dask, zarr), and a
        # forked worker of such a process can die at start (seen once in CI, exit code 1)
        loader = DataLoader(
            dataset, batch_size=None, num_workers=2, multiprocessing_context="forkserver"
        )
        return list(itertools.islice(loader, 4))

    first, second = run(), run()
    assert len(first) == 4
    for (pa, fa), (pb, fb) in zip(first, second, strict=True):
        assert torch.equal(pa, pb) and torch.equal(fa, fb)
    hashes = {tensors_sha256(p, f) for p, f in first}
    assert len(hashes) == 4  # workers do not repeat each other


def test_fixed_set_and_split() -> None:
    peaks = _synthetic_arrays(3, 6, 20)
    test_peaks = peaks.select_strains([4, 5])
    assert test_peaks.n_strains == 2
    cfg = MixtureConfig(n_materials=3, max_phases=2, batch_size=16)
    small = ProfileConfig(n_points=501)
    pa, fa, ha = make_fixed_mixture_set(test_peaks, cfg, small, n=40, seed=5)
    pb, fb, hb = make_fixed_mixture_set(test_peaks, cfg, small, n=40, seed=5)
    _, _, hc = make_fixed_mixture_set(test_peaks, cfg, small, n=40, seed=6)
    assert pa.shape == (40, 501) and fa.shape == (40, 3)
    assert ha == hb == tensors_sha256(pa, fa) and ha != hc and len(ha) == 64

    train, val = split_train_validation(500, 0.6, seed=0)
    assert len(train) == 300 and len(val) == 200
    assert set(train) | set(val) == set(range(500)) and not set(train) & set(val)
    again, _ = split_train_validation(500, 0.6, seed=0)
    assert np.array_equal(train, again)
    with pytest.raises(ConfigError):
        split_train_validation(500, 1.0)


# ---------------------------------------------------------------- augmentations


def _stick_profiles(n_samples: int = 4, n_peaks: int = 10) -> torch.Tensor:
    centers = np.linspace(15, 75, n_peaks)[None].repeat(n_samples, 0)
    heights = np.linspace(20, 100, n_peaks)[None].repeat(n_samples, 0)
    shape = ProfileConfig(clean_crystallite_size_nm=60.0, clean_eta=0.3)
    return render_clean(centers, heights, np.ones(centers.shape, bool), shape)


def test_shift_moves_argmax() -> None:
    y = _stick_profiles()
    moved = shift_by_points(y, torch.tensor([5, -7, 0, 30]))
    assert (moved.argmax(1) - y.argmax(1)).tolist() == [5, -7, 0, 30]
    assert float(moved[0, :5].abs().max()) == 0.0  # zero fill
    cfg = AugmentConfig(shift_prob=1.0, max_shift_deg=0.3)
    out, points = shift_patterns(y, cfg, _gen(2), CFG.step_deg)
    assert torch.equal(out.argmax(1) - y.argmax(1), points)
    assert int(points.abs().max()) <= round(0.3 / CFG.step_deg) and int(points.abs().max()) > 0


def test_elimination_reduces_peak_count() -> None:
    y = _stick_profiles()
    w = round(0.4 / CFG.step_deg)
    before = find_peaks(y, w, 0.02).sum(1)
    assert before.tolist() == [10] * 4
    cfg = AugmentConfig(eliminate_prob=1.0, eliminate_fraction=0.5)
    after = find_peaks(eliminate_peaks(y, cfg, _gen(0), CFG.step_deg), w, 0.02).sum(1)
    assert bool((after < before).all())
    every = AugmentConfig(eliminate_prob=1.0, eliminate_fraction=1.0)
    gone = eliminate_peaks(y, every, _gen(0), CFG.step_deg)
    assert float(gone.max()) < 0.02
    none = AugmentConfig(eliminate_prob=0.0)
    assert torch.equal(eliminate_peaks(y, none, _gen(0), CFG.step_deg), y)


def test_scaling_scales_picked_peaks() -> None:
    y = _stick_profiles()
    w = round(0.4 / CFG.step_deg)
    peaks = find_peaks(y, w, 0.02)
    cfg = AugmentConfig(scale_prob=1.0, scale_peak_fraction=1.0, scale_factor_range=(2.0, 2.0))
    out = scale_peaks(y, cfg, _gen(0), CFG.step_deg)
    base = local_baseline(y, w)  # scaling acts above the local baseline
    assert float(base[peaks].max()) < 2e-3
    assert torch.allclose(out[peaks], (2.0 * y - base)[peaks], rtol=1e-5, atol=1e-6)
    half = AugmentConfig(scale_prob=1.0, scale_peak_fraction=0.5, scale_factor_range=(0.5, 1.5))
    changed = (scale_peaks(y, half, _gen(1), CFG.step_deg) - y)[peaks].abs() > 1e-6
    assert 0 < int(changed.sum()) < int(peaks.sum())


def test_isotropic_strain_moves_peaks_as_bragg_says() -> None:
    shape = ProfileConfig(clean_crystallite_size_nm=60.0, clean_eta=0.3)
    centers = np.array([[20.0, 30.0], [40.0, 50.0], [60.0, 70.0], [35.0, 75.0]])
    heights = np.array([[100.0, 60.0]] * 4)
    mask = np.ones(centers.shape, bool)
    y = render_clean(centers, heights, mask, shape)
    cfg = AugmentConfig(strain_prob=1.0, max_isotropic_strain=0.01)
    out, strain = strain_patterns(y, cfg, _gen(3), shape.step_deg, shape.two_theta_min)
    assert bool((strain != 0).all()) and float(strain.abs().max()) <= 0.01
    e = strain.double().numpy()[:, None]
    moved = np.degrees(2 * np.arcsin(np.sin(np.radians(centers) / 2) / (1 + e)))
    assert float(np.abs(moved - centers).max()) > 0.3  # Bragg: up to ~0.8 deg at 75 deg
    grid = shape.two_theta_min + shape.step_deg * np.arange(shape.n_points)

    def centroid_and_area(profile: torch.Tensor, center: float) -> tuple[float, float]:
        window = np.abs(grid - center) < 0.5
        values = profile.double().numpy()[window]
        return float((grid[window] * values).sum() / values.sum()), float(values.sum())

    for b, peak in itertools.product(range(4), range(2)):
        # render_clean puts a stick on its nearest grid point: move that point by Bragg's law
        before, area = centroid_and_area(y[b], centers[b, peak])
        bragg = np.degrees(2 * np.arcsin(np.sin(np.radians(before) / 2) / (1 + e[b, 0])))
        after, area_after = centroid_and_area(out[b], moved[b, peak])
        assert after == pytest.approx(bragg, abs=2e-3)
        assert area_after == pytest.approx(area, rel=0.03)  # the peak's area is kept
    # unchosen patterns are returned untouched; peak lists move the same way
    half = AugmentConfig(strain_prob=0.5, max_isotropic_strain=0.01)
    out_half, strain_half = strain_patterns(y, half, _gen(5), shape.step_deg, shape.two_theta_min)
    kept = strain_half == 0
    assert 0 < int(kept.sum()) < 4 and torch.equal(out_half[kept], y[kept])
    only = AugmentConfig(scale_prob=0.0, eliminate_prob=0.0, shift_prob=0.0, strain_prob=1.0)
    tt = torch.tensor(centers)
    tt2, _, _ = augment_peak_list(tt, torch.tensor(heights), torch.tensor(mask), only, _gen(1))
    ratio = torch.sin(torch.deg2rad(tt) / 2) / torch.sin(torch.deg2rad(tt2) / 2)
    assert torch.allclose(ratio, ratio[:, :1].expand(-1, 2))  # one 1 + e per pattern
    assert float((ratio - 1).abs().max()) <= only.max_isotropic_strain + 1e-9
    with pytest.raises(ValueError, match="two_theta_start"):
        augment_profiles(y, cfg, _gen(0), shape.step_deg)


def test_augment_is_seeded_and_peak_list_version() -> None:
    y = _stick_profiles()
    cfg = AugmentConfig(scale_prob=1.0, eliminate_prob=1.0, shift_prob=1.0)
    a = augment_profiles(y, cfg, _gen(9), CFG.step_deg)
    b = augment_profiles(y, cfg, _gen(9), CFG.step_deg)
    assert torch.equal(a, b) and not torch.equal(a, y)
    tt = torch.linspace(15, 75, 10).repeat(4, 1)
    inten = torch.full((4, 10), 50.0)
    mask = torch.ones(4, 10, dtype=torch.bool)
    every = AugmentConfig(
        scale_prob=1.0,
        scale_peak_fraction=1.0,
        scale_factor_range=(2.0, 2.0),
        eliminate_prob=1.0,
        eliminate_fraction=0.5,
        shift_prob=1.0,
        max_shift_deg=0.5,
    )
    tt2, inten2, mask2 = augment_peak_list(tt, inten, mask, every, _gen(0))
    assert torch.allclose(inten2, torch.full((4, 10), 100.0))
    assert bool((mask2.sum(1) < 10).all())
    offset = tt2 - tt
    assert torch.allclose(offset, offset[:, :1].expand(-1, 10), atol=1e-5)
    assert float(offset.abs().max()) <= 0.5 + 1e-6


# ---------------------------------------------------------------- device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(0)
    tt = rng.uniform(10, 80, (8, 400)).astype(np.float32)
    inten = rng.uniform(1, 100, tt.shape).astype(np.float32)
    mask = np.ones(tt.shape, bool)
    cpu = render_clean(tt, inten, mask, CFG, device="cpu")
    gpu = render_clean(tt, inten, mask, CFG, device="cuda")
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)
    peaks = _synthetic_arrays(4, 5, 30).to("cuda")
    patterns, fractions, _ = MixtureSampler(
        peaks, MixtureConfig(n_materials=4, max_phases=3, batch_size=64), device="cuda"
    ).sample()
    assert patterns.device.type == "cuda" and fractions.device.type == "cuda"
    assert torch.allclose(fractions.sum(1), torch.ones(64, device="cuda"))


def test_mixture_loader_on_cpu_yields_batches() -> None:
    from xrdpipe.patterns import mixture_loader

    peaks = _synthetic_arrays(4, 5, 30)
    cfg = MixtureConfig(n_materials=4, max_phases=2, batch_size=8)
    dataset = MixtureDataset(peaks, cfg, ProfileConfig(n_points=501), seed=4, n_batches=2)
    loader = mixture_loader(dataset, "cpu", num_workers=0)
    assert loader.pin_memory is False
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (8, 501)
    assert torch.allclose(batches[1][1].sum(1), torch.ones(8))
