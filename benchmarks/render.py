"""Mixtures per second of the data engine vs the naive float64 reference.

Batches of 512 mixtures, K = 3 (k uniform in 1..3), phases of about 50, 300 and 850 peaks,
including the draws, the rendering, noise and background. The naive reference (every peak
on the whole grid, numpy float64, plus the same normalisation, noise and background) is
timed in the same run on a few mixtures of the same draws and extrapolated per mixture.

    python benchmarks/render.py                 # one CPU thread (+ CUDA when present)
    python benchmarks/render.py --threads 4 --batches 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xrdpipe.patterns import MixtureConfig, MixtureSampler, PeakArrays, ProfileConfig
from xrdpipe.patterns.render import render_naive

N_MATERIALS = 5
N_STRAINS = 50
PEAKS_PER_PHASE = (50, 300, 850)
NAIVE_MIXTURES = 4


def pool(n_peaks: int, seed: int = 0) -> PeakArrays:
    """Synthetic peak lists: ``n_peaks`` +-10 % per material, 10-80 degrees."""
    rng = np.random.default_rng(seed)
    tt = np.sort(rng.uniform(10.0, 80.0, (N_MATERIALS, N_STRAINS, n_peaks)), axis=-1)
    inten = rng.lognormal(2.0, 1.5, tt.shape)
    inten = 100 * inten / inten.max(axis=-1, keepdims=True)
    count = rng.integers(int(0.9 * n_peaks), n_peaks + 1, (N_MATERIALS, 1))
    mask = np.broadcast_to(np.arange(n_peaks) < count[..., None], tt.shape)
    return PeakArrays.from_arrays(tt, inten, mask)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = ProfileConfig()
    cfg = MixtureConfig(n_materials=N_MATERIALS, max_phases=3, batch_size=args.batch_size)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), batch {cfg.batch_size}, K=3")
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
