"""Brindley microabsorption in on-the-fly rendering, against hand-computed values."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from xrdpipe.diffraction.quantitative import (
    MicroabsorptionWarning,
    brindley_factors,
    cell_mass,
    hill_howard_weight_fractions,
    linear_absorption_coefficient,
    particle_absorption_factor,
)
from xrdpipe.errors import ConfigError
from xrdpipe.patterns.config import InstrumentConfig, MixtureConfig, ProfileConfig
from xrdpipe.patterns.datasets import load_peaks
from xrdpipe.patterns.microabsorption import ParticleAbsorptionTable, absorption_table
from xrdpipe.patterns.mixtures import (
    MixtureSampler,
    PeakArrays,
    mixture_intensities,
    tensors_sha256,
)

# phase A: Bi2O3-like, mu 1881 1/cm, rho 8.9, V 330 A^3; phase B: TiO2-like, mu 527, rho 4.25,
# V 62.4; one peak each, intensity_raw 1000 and 200
MU = [1881.0, 527.0]
RHO = [8.9, 4.25]
VOLUME = [330.0, 62.4]
RAW = [1000.0, 200.0]


def two_phase_peaks(mu=MU, names=("Bi2O3", "TiO2")) -> PeakArrays:
    return PeakArrays.from_arrays(
        np.array([[[30.0]], [[40.0]]]),
        np.full((2, 1, 1), 100.0),
        np.ones((2, 1, 1), bool),
        intensity_raw=np.array(RAW).reshape(2, 1, 1),
        d_spacing=np.array([[[2.976]], [[2.252]]]),
        volume=np.array(VOLUME).reshape(2, 1),
        density=np.array(RHO).reshape(2, 1),
        linear_absorption=np.array(mu).reshape(2, 1),
        names=list(names),
    )


def test_two_phase_intensity_ratio_is_hill_howard_times_brindley_by_hand():
    peaks = two_phase_peaks()
    micro = absorption_table(peaks, (2.0, 2.0), torch.device("cpu"))
    w = torch.tensor([[0.4, 0.6]], dtype=torch.float64)
    mu, rho = torch.tensor([MU]), torch.tensor([RHO])
    radius, tau = micro.draw(w, mu, rho, torch.Generator().manual_seed(0))
    # v = (0.4/8.9, 0.6/4.25) / 0.186121 = (0.241477, 0.758523); mu_bar = 853.960 1/cm
    # a = (mu - mu_bar) * 2e-4 cm = (0.205408, -0.065392); tau at 90 degrees (the
    # quadrature of diffraction.quantitative, checked there at 0 and 180 degrees):
    assert radius.tolist() == [2.0]
    np.testing.assert_allclose(tau[0].numpy(), [0.742493, 1.104207], atol=2e-5)
    sticks = mixture_intensities(
        torch.full((1, 2, 1), 100.0), w.float(), "weight",
        intensity_raw=torch.tensor(RAW).reshape(1, 2, 1), volume=torch.tensor([VOLUME]),
        density=torch.tensor([RHO]),
    ).double() * tau.unsqueeze(-1)  # fmt: skip
    # Hill-Howard alone: (0.4 * 1000 / (8.9 * 330^2)) / (0.6 * 200 / (4.25 * 62.4^2))
    #                  = 4.127072e-4 / 7.251426e-3 = 0.0569140
    # times tau_A / tau_B = 0.742493 / 1.104207 = 0.672420: 0.0382702
    ratio = float(sticks[0, 0, 0] / sticks[0, 1, 0])
    assert ratio == pytest.approx(0.0382702, rel=5e-5)
    # the sampler does exactly this for each drawn two-phase mixture
    cfg = MixtureConfig(
        n_materials=2, max_phases=2, batch_size=64, fraction_mode="weight",
        phase_draw="distinct", particle_radius_um=2.0,
    )  # fmt: skip
    draw = MixtureSampler(peaks, cfg, seed=5, device="cpu").draw()
    both = draw.extras["n_phases"] == 2
    fractions, materials = draw.extras["fractions"][both], draw.extras["materials"][both]
    w_mat = torch.zeros(len(fractions), 2).scatter_(1, materials, fractions).double().numpy()
    sticks = (
        torch.zeros(len(fractions), 2)
        .scatter_(1, materials, draw.intensity.reshape(-1, 2)[both])
        .double()
        .numpy()
    )  # one peak per phase: the phase's stick in material order
    expected_tau = brindley_factors(w_mat, np.array(MU), np.array(RHO), 2.0, two_theta=90.0)
    scale = w_mat * expected_tau / (np.array(RHO) * np.array(VOLUME) ** 2)
    expected = (scale[:, 0] * RAW[0]) / (scale[:, 1] * RAW[1])
    np.testing.assert_allclose(sticks[:, 0] / sticks[:, 1], expected, rtol=1e-4)
    # and the refinement's inverse (Hill-Howard with Brindley, iterated) gives w back
    back = hill_howard_weight_fractions(
        sticks / np.array(RAW), 1.0, cell_mass(np.array(RHO), np.array(VOLUME)),
        np.array(VOLUME), linear_absorption=np.array(MU), density=np.array(RHO),
        particle_radius=2.0,
    )  # fmt: skip
    np.testing.assert_allclose(back, w_mat, atol=1e-4)
    assert len(fractions) > 20


def test_no_particle_size_leaves_the_batch_as_before(one_thread):
    """SHA-256 of batches drawn by the code before microabsorption existed (98c1c0d)."""
    rng = np.random.default_rng(7)
    m, s, p = 3, 2, 4
    tt = np.sort(rng.uniform(15, 85, (m, s, p)), axis=-1)
    raw = rng.uniform(10, 1000, (m, s, p))
    peaks = PeakArrays.from_arrays(
        tt, 100 * raw / raw.max(-1, keepdims=True), np.ones((m, s, p), bool),
        intensity_raw=raw, d_spacing=1.5406 / (2 * np.sin(np.radians(tt / 2))),
        volume=rng.uniform(60, 400, (m, s)), density=rng.uniform(3, 9, (m, s)),
    )  # fmt: skip
    recorded = {
        ("intensity", False): "a4978a20d122dc5a3e63a116e7964f2593a2e366e33d30991478ff91ee3134f2",
        ("intensity", True): "e05a219bafaefc3294b6377714c43b3a37084f0085347eb864bc8532d0b4e95d",
        ("weight", False): "86d2329b908fdc509c3061b4a17b77a95f24c772c8d58c3d41642682787d0d4b",
        ("weight", True): "3035b3b435db7927efa748818ed346f69ffd688d3b369ecef206fb31ea9c3cc6",
    }
    for (mode, instrument), sha in recorded.items():
        profile = ProfileConfig(n_points=601, instrument=InstrumentConfig() if instrument else None)
        cfg = MixtureConfig(n_materials=3, max_phases=2, batch_size=16, fraction_mode=mode)
        assert "particle_radius_um" not in cfg.model_dump()  # fixed-set keys unchanged
        x, y, _ = MixtureSampler(peaks, cfg, profile, seed=3, device="cpu").sample()
        assert tensors_sha256(x, y) == sha, (mode, instrument)
    # a radius with equal absorbers (tau = 1) draws nothing more: the same patterns
    same = replace_mu(peaks, np.full((m, s), 300.0))
    cfg = MixtureConfig(n_materials=3, max_phases=2, batch_size=16, fraction_mode="weight")
    x0, y0, _ = MixtureSampler(same, cfg, ProfileConfig(n_points=601), seed=3).sample()
    cfg_r = cfg.model_copy(update={"particle_radius_um": 5.0})
    x1, y1, extras = MixtureSampler(same, cfg_r, ProfileConfig(n_points=601), seed=3).sample()
    torch.testing.assert_close(extras["brindley_tau"], torch.ones(16, 2, dtype=torch.float64))
    torch.testing.assert_close(x1, x0, rtol=1e-6, atol=1e-7)
    assert torch.equal(y1, y0)


def replace_mu(peaks: PeakArrays, mu: np.ndarray | None) -> PeakArrays:
    value = None if mu is None else torch.as_tensor(mu, dtype=torch.float64)
    return replace(peaks, linear_absorption=value)


def test_strong_absorber_with_large_particles_warns_once_naming_the_phases():
    cfg = MixtureConfig(n_materials=2, max_phases=2, fraction_mode="weight", particle_radius_um=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MicroabsorptionWarning)
        MixtureSampler(two_phase_peaks(), cfg, device="cpu")  # 1354 * 2e-4 = 0.27: quiet
    large = cfg.model_copy(update={"particle_radius_um": (5.0, 10.0)})
    peaks = two_phase_peaks(names=("Bi2O3 (big)", "TiO2 (big)"))
    with pytest.warns(MicroabsorptionWarning, match=r"Bi2O3 \(big\) \(against TiO2 \(big\): 1.35"):
        sampler = MixtureSampler(peaks, large, device="cpu")  # 1354 * 1e-3 = 1.354
    with warnings.catch_warnings():
        warnings.simplefilter("error", MicroabsorptionWarning)
        MixtureSampler(peaks, large, device="cpu")  # once per pool
    _, _, extras = sampler.sample(32)
    assert float(extras["particle_radius_um"].min()) >= 5.0
    assert float(extras["particle_radius_um"].max()) <= 10.0
    assert sampler._absorption.table.a_min <= -1.354  # the table covers the reach


def test_configuration_errors_name_the_fix():
    with pytest.raises(ValueError, match="needs fraction_mode 'weight'"):
        MixtureConfig(particle_radius_um=2.0)
    cfg = MixtureConfig(n_materials=2, fraction_mode="weight", particle_radius_um=2.0)
    bare = replace_mu(two_phase_peaks(), None)
    with pytest.raises(ConfigError, match="absorption=True"):
        MixtureSampler(bare, cfg, device="cpu")


def test_table_interpolates_the_quadrature():
    table = ParticleAbsorptionTable(1.0, "cpu")
    a = torch.linspace(-0.99, 0.99, 37, dtype=torch.float64)
    exact = brindley_factors(
        np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]]), np.ones((1, 2)), 1.0
    )  # tau(0) by the quadrature
    assert float(table(torch.zeros(1))[0]) == pytest.approx(float(exact[0, 0]), abs=1e-12)
    np.testing.assert_allclose(table(a).numpy(), particle_absorption_factor(a.numpy()), rtol=2e-5)


def test_load_peaks_gives_each_material_its_linear_absorption(tiny_store_built):
    store = tiny_store_built / "patterns.zarr"
    loaded = load_peaks(store, "train", absorption=True)
    mu = loaded.peaks.linear_absorption.numpy()
    density = loaded.peaks.density.double().numpy()
    for i, formula in enumerate(loaded.materials["formula"]):
        expected = linear_absorption_coefficient(formula, float(density[i, 0]), loaded.wavelength)
        assert mu[i, 0] == pytest.approx(expected, rel=1e-5)
    assert loaded.peaks.names is not None and len(loaded.peaks.names) == mu.shape[0]
    assert load_peaks(store, "train").peaks.linear_absorption is None
