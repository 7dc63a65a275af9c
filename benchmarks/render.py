"""Mixtures per second of the data engine vs the naive float64 reference, and with every
instrument effect on vs the plain engine.

Batches of 512 mixtures, K = 3 (k uniform in 1..3), phases of about 50, 300 and 850 peaks,
including the draws, the rendering, noise and background. The naive reference (every peak
on the whole grid, numpy float64, plus the same normalisation, noise and background) is
timed in the same run on a few mixtures of the same draws and extrapolated per mixture.

The instrument table renders ~300-peak phases of five real symmetries (cubic m-3m, so 24
proper rotations per March-Dollase family, hexagonal, tetragonal, orthorhombic, monoclinic)
with the K-alpha doublet, zero shift, sample displacement, monochromator, automatic slit,
TCH widths, March-Dollase, Chebyshev background + amorphous hump and Poisson counts, and the
plain engine (paper 002's defaults) on the same peaks in the same run. With
``--particle-radius R`` both engines draw weight fractions (``fraction_mode: weight``) and
the instrument engine adds Brindley microabsorption at radius R micrometre (linear absorption
coefficients 50-1900 1/cm, one per material).

    python benchmarks/render.py                 # one CPU thread (+ CUDA when present)
    python benchmarks/render.py --threads 4 --batches 5
    python benchmarks/render.py --only instrument
    python benchmarks/render.py --only instrument --particle-radius 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xrdpipe.patterns import MixtureConfig, MixtureSampler, PeakArrays, ProfileConfig
from xrdpipe.patterns.config import (
    AmorphousHumpConfig,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    MarchDollaseConfig,
    TCHWidthConfig,
)
from xrdpipe.patterns.orientation import orientation_tables
from xrdpipe.patterns.render import render_naive

N_MATERIALS = 5
N_STRAINS = 50
PEAKS_PER_PHASE = (50, 300, 850)
NAIVE_MIXTURES = 4
INSTRUMENT_PEAKS = 300
CU_KA = 1.54184
LINEAR_ABSORPTION = np.array([50.0, 200.0, 500.0, 1000.0, 1900.0])
"""1/cm, one per material (brucite-like to Bi2O3-like at Cu K-alpha)."""
EVERY_EFFECT = ProfileConfig(
    ka_doublet=True,
    zero_shift_deg=(-0.05, 0.05),
    background_amplitude=(0.0, 0.1),
    instrument=InstrumentConfig(
        goniometer_radius_mm=240.0,
        divergence_slit="automatic",
        monochromator_two_theta_deg=26.57,
        sample_displacement_mm=(-0.2, 0.2),
        widths=TCHWidthConfig(),
        preferred_orientation=MarchDollaseConfig(),
        chebyshev_background=ChebyshevBackgroundConfig(order=6),
        amorphous_hump=AmorphousHumpConfig(),
        counting_noise=CountingNoiseConfig(),
    ),
)
"""Every instrument effect on (a lab's Cu K-alpha1/2 Bragg-Brentano set-up)."""


def pool(n_peaks: int, seed: int = 0) -> PeakArrays:
    """Synthetic peak lists: ``n_peaks`` +-10 % per material, 10-80 degrees."""
    rng = np.random.default_rng(seed)
    tt = np.sort(rng.uniform(10.0, 80.0, (N_MATERIALS, N_STRAINS, n_peaks)), axis=-1)
    inten = rng.lognormal(2.0, 1.5, tt.shape)
    inten = 100 * inten / inten.max(axis=-1, keepdims=True)
    count = rng.integers(int(0.9 * n_peaks), n_peaks + 1, (N_MATERIALS, 1))
    mask = np.broadcast_to(np.arange(n_peaks) < count[..., None], tt.shape)
    return PeakArrays.from_arrays(tt, inten, mask)


def _symmetric_structures() -> list:
    from pymatgen.core import Lattice, Structure

    site = [[0.11, 0.23, 0.37]]  # a general position: the structure has the full group
    cells = [
        ("Fm-3m", Lattice.cubic(16.0)),
        ("P6_3/mmc", Lattice.hexagonal(11.0, 13.0)),
        ("I4_1/amd", Lattice.tetragonal(10.0, 21.0)),
        ("Pnma", Lattice.orthorhombic(10.0, 12.0, 14.0)),
        ("P2_1/c", Lattice.monoclinic(9.0, 11.0, 13.0, 100.0)),
    ]
    return [Structure.from_spacegroup(sg, lat, ["O"], site) for sg, lat in cells]


def instrument_pool(n_peaks: int = INSTRUMENT_PEAKS, seed: int = 0) -> PeakArrays:
    """``n_peaks`` +-10 % reflections per material of five real symmetries, 10-80 degrees,
    with Miller indices, point groups and d-spacings (50 strain conditions of +-0.5 %)."""
    rng = np.random.default_rng(seed)
    structures = _symmetric_structures()
    rotations, basis = orientation_tables(structures)
    box = np.arange(-12, 13)
    hkl_all = np.stack(np.meshgrid(box, box, box, indexing="ij"), -1).reshape(-1, 3)
    shape = (N_MATERIALS, N_STRAINS, n_peaks)
    tt, d, hkl = np.zeros(shape), np.ones(shape), np.zeros((*shape, 3))
    for m in range(N_MATERIALS):
        spacing = 1.0 / np.maximum(np.linalg.norm(hkl_all @ basis[m].T, axis=1), 1e-12)
        two_theta = np.degrees(2 * np.arcsin(np.clip(CU_KA / (2 * spacing), 0, 1)))
        inside = np.flatnonzero((two_theta > 10.5) & (two_theta < 79.5))
        pick = np.sort(rng.choice(inside, n_peaks, replace=False))
        strain = 1 + rng.uniform(-0.005, 0.005, (N_STRAINS, 1))
        d[m] = spacing[pick][None] * strain
        tt[m] = np.degrees(2 * np.arcsin(CU_KA / (2 * d[m])))
        hkl[m] = hkl_all[pick][None]
    inten = rng.lognormal(2.0, 1.5, shape)
    inten = 100 * inten / inten.max(axis=-1, keepdims=True)
    count = rng.integers(int(0.9 * n_peaks), n_peaks + 1, (N_MATERIALS, 1))
    mask = np.broadcast_to(np.arange(n_peaks) < count[..., None], shape)
    return PeakArrays.from_arrays(
        tt, inten, mask, d_spacing=d, hkl=hkl, rotations=rotations, reciprocal_basis=basis,
        intensity_raw=inten, volume=rng.uniform(100.0, 1000.0, shape[:2]),
        density=rng.uniform(2.0, 9.0, shape[:2]),
        linear_absorption=np.broadcast_to(LINEAR_ABSORPTION[:, None], shape[:2]),
    )  # fmt: skip


def time_engine(sampler: MixtureSampler, batches: int) -> tuple[float, float]:
    """Mean and best mixtures per second of ``sampler.sample()`` (after a warm-up batch)."""
    sync = torch.cuda.synchronize if sampler.device.type == "cuda" else (lambda: None)
    sampler.sample()
    sync()
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        sampler.sample()
        sync()
        times.append(time.perf_counter() - start)
    size = sampler.cfg.batch_size
    return size * batches / sum(times), size / min(times)


def time_naive(sampler: MixtureSampler, profile: ProfileConfig) -> float:
    """Mixtures per second of the naive reference on a few mixtures of one draw."""
    draw = sampler.draw(NAIVE_MIXTURES)
    phase = draw.phase_index.cpu()
    eta = draw.extras["eta"].cpu().gather(1, phase).numpy()
    size = draw.extras["crystallite_size_nm"].cpu().gather(1, phase).numpy()
    tt, inten, mask = (t.cpu().numpy() for t in (draw.two_theta, draw.intensity, draw.mask))
    rng = np.random.default_rng(0)
    grid = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    start = time.perf_counter()
    y = render_naive(tt, inten, mask, eta, size, profile)
    y /= y.max(axis=1, keepdims=True)
    y += rng.uniform(*profile.noise_fraction, (len(y), 1)) * rng.standard_normal(y.shape)
    amp = rng.uniform(*profile.background_amplitude, (len(y), 1))
    tau = rng.uniform(*profile.background_decay_deg, (len(y), 1))
    y += amp * np.exp(-(grid - grid[0]) / tau)
    y = (y - y.min(axis=1, keepdims=True)) / np.ptp(y, axis=1, keepdims=True)
    return NAIVE_MIXTURES / (time.perf_counter() - start)


def instrument_table(
    cfg: MixtureConfig, devices: list[str], batches: int, radius: float | None = None
) -> None:
    """Every instrument effect on vs the plain engine, the same ~300-peak phases, one run.

    With ``radius`` (micrometre) both draw weight fractions and the instrument engine adds
    Brindley microabsorption.
    """
    peaks = instrument_pool()
    brindley = "" if radius is None else f", weight fractions + Brindley R={radius:g} um"
    print(f"\nevery instrument effect on{brindley}, ~{INSTRUMENT_PEAKS} peaks/phase, K=3")
    every_cfg = cfg
    if radius is not None:
        cfg = cfg.model_copy(update={"fraction_mode": "weight"})
        every_cfg = cfg.model_copy(update={"particle_radius_um": radius})
    print(
        f"{'device':<6} {'plain mix/s':>12} {'best':>7} {'instrument mix/s':>17} {'best':>7} "
        f"{'ratio':>6}"
    )
    for device in devices:
        plain = MixtureSampler(peaks, cfg, ProfileConfig(), seed=0, device=device)
        every = MixtureSampler(peaks, every_cfg, EVERY_EFFECT, seed=0, device=device)
        plain_rate, plain_best = time_engine(plain, batches)
        rate, best = time_engine(every, batches)
        print(
            f"{device:<6} {plain_rate:>12.0f} {plain_best:>7.0f} {rate:>17.0f} {best:>7.0f} "
            f"{rate / plain_rate:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--only", choices=["naive", "instrument"], default=None)
    parser.add_argument("--particle-radius", type=float, default=None, metavar="UM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = ProfileConfig()
    cfg = MixtureConfig(n_materials=N_MATERIALS, max_phases=3, batch_size=args.batch_size)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {cfg.batch_size}, K=3")
    if args.only != "naive":
        instrument_table(cfg, devices, args.batches, args.particle_radius)
    if args.only == "instrument":
        return
    print(
        f"{'device':<6} {'peaks/phase':>11} {'engine mix/s':>13} {'best batch':>11} "
        f"{'naive mix/s':>12} {'ratio':>8}"
    )
    for n_peaks in PEAKS_PER_PHASE:
        peaks = pool(n_peaks)
        naive = time_naive(MixtureSampler(peaks, cfg, profile, seed=1, device="cpu"), profile)
        for device in devices:
            sampler = MixtureSampler(peaks, cfg, profile, seed=0, device=device)
            rate, best = time_engine(sampler, args.batches)
            print(
                f"{device:<6} {n_peaks:>11} {rate:>13.0f} {best:>11.0f} "
                f"{naive:>12.2f} {rate / naive:>8.0f}"
            )


if __name__ == "__main__":
    main()
