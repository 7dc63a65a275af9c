"""Training throughput of both models at the ``cpu`` and ``paper`` presets on this machine.

For each (model, preset) it runs a few real optimisation steps of ``xrdpipe.training.train``
with the batches the tasks use, and prints samples/s and the share of step time spent
making the batch (``data_time_fraction``):

* phase-fraction CNN: mixtures drawn and rendered on the fly (paper 002), N=5, K=3;
* a-CNN (each preset's first variant): stored single-phase profiles, indexed and augmented
  at tensor level (paper 000; `cpu-binned`: the isotropic strain only),
  with and without augmentation.

Usage (needs a simulated store, e.g. ``xrdpipe run demo --no-train``)::

    XRDPIPE_DATA_DIR=data .venv/bin/python benchmarks/train.py --subset demo [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xrdpipe.config import Settings, load_catalog
from xrdpipe.models import ACNN, PhaseCNN, PhaseCNNConfig, count_parameters
from xrdpipe.patterns import MixtureConfig, MixtureSampler
from xrdpipe.patterns.augment import augment_profiles
from xrdpipe.patterns.datasets import load_peaks, load_profiles
from xrdpipe.training import TrainConfig, TVDLoss, classification_loss, pick_device, train
from xrdpipe.training.classifier import acnn_config
from xrdpipe.training.phase_fractions import completed_material_table, grid_material_order


def _run(
    model, batches, loss_fn, steps: int, batch_size: int, device: str, epochs: int = 2
) -> dict:
    cfg = TrainConfig(
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        early_stopping_patience=None,
        device=device,
        deterministic=False,
    )
    result = train(model, batches, None, loss_fn, cfg, progress=False)
    last = result.history[-1]  # the last epoch: warm (allocations, first calls done)
    return {"samples_per_s": last["samples_per_s"], "data": last["data_time_fraction"]}


def bench_phase_cnn(store, subset, preset, steps: int, device: str, epochs: int = 2) -> dict:
    ids = grid_material_order(completed_material_table(store), subset.seed)[:5]
    peaks = load_peaks(store, "train", ids, device=device)
    cfg = MixtureConfig(n_materials=5, max_phases=3, batch_size=preset.train.batch_size)
    sampler = MixtureSampler(
        peaks.peaks, cfg, subset.profile, seed=0, device=device, wavelength=peaks.wavelength
    )

    def batches():
        while True:
            x, y, _ = sampler.sample()
            yield x, y

    model = PhaseCNN(
        PhaseCNNConfig(
            n_points=subset.profile.n_points,
            n_materials=5,
            **preset.model.config_fields(),
        )
    )
    out = _run(model, batches(), TVDLoss(), steps, preset.train.batch_size, device, epochs)
    out["params"] = count_parameters(model)
    return out


def bench_acnn(store, subset, preset, steps: int, device: str, augment: bool) -> dict:
    profiles, materials, grid = load_profiles(store, subset.profile, "train")
    x_all = torch.from_numpy(np.ascontiguousarray(profiles[:, :20].reshape(-1, profiles.shape[2])))
    x_all = x_all.to(device)
    y_all = torch.randint(0, 7, (x_all.shape[0],), device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    step_deg = float(grid[1] - grid[0])

    def batches():
        while True:
            idx = torch.randint(
                0, x_all.shape[0], (preset.train.batch_size,), generator=gen, device=device
            )
            x = x_all[idx]
            if augment:
                x = augment_profiles(x, preset.data.augmentation, gen, step_deg, float(grid[0]))
                x = x / x.amax(dim=1, keepdim=True).clamp(min=1e-12)
            yield x, y_all[idx]

    model = ACNN(acnn_config(preset.model.variants[0], subset.profile.n_points, 7, preset))
    out = _run(
        model,
        batches(),
        classification_loss("cross_entropy"),
        steps,
        preset.train.batch_size,
        device,
    )
    out["params"] = count_parameters(model)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", default="demo")
    parser.add_argument("--steps", type=int, default=3, help="steps per epoch (2 epochs)")
    parser.add_argument(
        "--paper-steps", type=int, default=1, help="steps per epoch of the full-width phase CNN"
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    settings = Settings()
    catalog = load_catalog(None, settings)
    subset = catalog.subset(args.subset)
    store = settings.subset_dir(args.subset) / "patterns.zarr"
    device = str(pick_device(args.device))
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, "
        f"n_points {subset.profile.n_points}, store {store}"
    )
    print(f"{'model':<34}{'preset':<11}{'batch':>6}{'params':>12}{'samples/s':>11}{'data %':>8}")
    for name in ("cpu", "paper"):
        preset = catalog.preset("phase_fractions", name)
        # Full width on a CPU: one (cold) step is enough (~1 min). On a GPU a cold step is
        # mostly CUDA/cuDNN start-up (it read 50 samples/s on an H200 that trains at ~3800):
        # there the last of 2 warm epochs is timed, as for the cpu preset.
        warm = name == "cpu" or device.startswith("cuda")
        steps = args.steps if warm else args.paper_steps
        start = time.perf_counter()
        epochs = 2 if warm else 1
        r = bench_phase_cnn(store, subset, preset, steps, device, epochs)
        print(
            f"{'phase CNN (N=5, K=3)':<34}{name:<11}{preset.train.batch_size:>6}{r['params']:>12,}"
            f"{r['samples_per_s']:>11.1f}{100 * r['data']:>7.1f}%"
            f"   ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    for name in ("cpu", "cpu-binned", "paper"):
        # each preset's first variant; cpu-binned augments with the isotropic strain only
        preset = catalog.preset("classifier", name)
        for augment in (False, True):
            r = bench_acnn(store, subset, preset, args.steps * 3, device, augment)
            label = f"a-CNN {preset.model.variants[0]} " + ("augmented" if augment else "plain")
            print(
                f"{label:<34}{name:<11}{preset.train.batch_size:>6}{r['params']:>12,}"
                f"{r['samples_per_s']:>11.1f}{100 * r['data']:>7.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
