"""Training steps per second on a CPU with float32 vs bf16 autocast (``train.cpu_bf16``).

The network is a catalog preset's (default ``synthetic-cpu``, the mixture detector's: two
outputs) on its measured-like grid; each step is one AdamW step of a batch of the preset's
size, inputs drawn once. The measured-like draw (:class:`~xrdpipe.training.
measured_like_sampler.MeasuredLikeSampler`: up to three phases of about 150 reflections,
every instrument effect of the preset) is timed in the same run, so the last ratio is the
gain in patterns per minute of the detector's loop, where a batch is drawn, then stepped.
Both precisions start from the same weights; the agreement line compares their
``p(mixture)`` on one batch.

    python benchmarks/bf16.py                      # 2 threads, synthetic-cpu
    python benchmarks/bf16.py --threads 1 --steps 30
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.render import instrument_pool  # noqa: E402
from xrdpipe.config import load_catalog  # noqa: E402
from xrdpipe.training.measured_like import LAB_SCAN_PROFILE, build_network  # noqa: E402
from xrdpipe.training.measured_like_sampler import MeasuredLikeSampler  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "bf16.json"
CU_KA1 = 1.540593
PEAKS_PER_PHASE = 150
"""Reflections per phase (five symmetric cells of ``benchmarks/render.py``, with Miller indices
for the preferred orientation): the ``synthetic`` subset's median strong-line count is 67,
its stored lists are cut at the preset's ``max_peaks``."""


def time_steps(model: torch.nn.Module, x: torch.Tensor, bf16: bool, steps: int) -> float:
    """Seconds per AdamW step of ``model`` on ``x`` (two classes), after 3 warm-up steps."""
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    y = torch.arange(x.shape[0]) % 2
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        torch.nn.functional.cross_entropy(out.float(), y).backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synthetic-cpu", help="classifier preset")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_catalog().preset("classifier", args.preset)
    profile = preset.data.render or LAB_SCAN_PROFILE
    batch = preset.train.batch_size

    peaks = instrument_pool(PEAKS_PER_PHASE)
    sampler = MeasuredLikeSampler(peaks, profile, 0.02, CU_KA1, seed=0, max_phases=3)
    sampler.sample_mixtures(batch)
    start = time.perf_counter()
    for _ in range(args.steps):
        x, _, _ = sampler.sample_mixtures(batch)
    draw_s = (time.perf_counter() - start) / args.steps

    seconds = {}
    for bf16 in (False, True):
        model, _ = build_network(preset, profile.n_points, 2, seed=0)
        seconds[bf16] = time_steps(model, x, bf16, args.steps)
    model, _ = build_network(preset, profile.n_points, 2, seed=0)
    model.eval()
    with torch.no_grad():
        p32 = torch.softmax(model(x), 1)[:, 1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p16 = torch.softmax(model(x).float(), 1)[:, 1]
    step_ratio = seconds[False] / seconds[True]
    loop_ratio = (draw_s + seconds[False]) / (draw_s + seconds[True])
    print(f"preset {args.preset}: batch {batch}, {profile.n_points} points, {args.threads} threads")
    print(f"draw (measured-like, 3 phases)   {1000 * draw_s:7.1f} ms/batch")
    print(f"step float32                      {1000 * seconds[False]:7.1f} ms/batch")
    print(f"step bf16 autocast                {1000 * seconds[True]:7.1f} ms/batch")
    print(f"step ratio float32/bf16           {step_ratio:7.2f}x")
    print(f"draw+step ratio (patterns/min)    {loop_ratio:7.2f}x")
    print(f"p(mixture) |bf16 - float32| max   {float((p16 - p32).abs().max()):7.4f}")
    result = {
        "benchmark": "bf16",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "threads": args.threads,
        },
        "command": "python " + " ".join(["benchmarks/bf16.py", *sys.argv[1:]]),
        "preset": args.preset,
        "batch_size": batch,
        "n_points": profile.n_points,
        "draw_ms": 1000 * draw_s,
        "step_float32_ms": 1000 * seconds[False],
        "step_bf16_ms": 1000 * seconds[True],
        "step_ratio": step_ratio,
        "loop_ratio": loop_ratio,
        "p_mixture_max_abs_diff": float((p16 - p32).abs().max()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
