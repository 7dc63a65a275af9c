"""Patterns per second of ``xrdpipe predict`` on CPU: reading + preprocessing, and the models.

Writes ``--files`` measured-like ``.xy`` files (Cu K-alpha doublets rendered by xrdpipe from
synthetic peak lists, 5-90 deg in 0.02 deg steps, Poisson counts), registers an untrained
a-CNN (7 classes) and phase-fraction CNN (N = 5, ``--width``) on the paper grid (10-80 deg,
4501 points) in a temporary MLflow SQLite store, loads both back as ``xrdpipe predict``
does (pt2 models), then times separately:

1. reading + checking + Bragg conversion + interpolation + normalisation of every file;
2. each model on the whole batch (``ModelEnsemble.predict``, batches of 256);
3. the end-to-end per-file path of the CLI (``predict_files`` without plots) on a subset,
   without and with the classifier joined with each file's indexing (the default).

    python benchmarks/predict.py                    # 1,000 files, one CPU thread
    python benchmarks/predict.py --threads 2 --files 200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from xrdpipe import tracking
from xrdpipe.config import SubsetConfig
from xrdpipe.models import ACNN, ACNNConfig, PhaseCNN, PhaseCNNConfig
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.render import render_profiles
from xrdpipe.readers import prepare_pattern, read_pattern
from xrdpipe.stages.predict import load_model_ensemble, predict_files
from xrdpipe.training.checkpoints import save_checkpoint

FILE_PROFILE = ProfileConfig(
    two_theta_min=5.0, two_theta_max=90.0, n_points=4251, ka_doublet=True, noise_fraction=(0, 0)
)


def write_files(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` two-column files of random 60-peak patterns (counts)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    d = 1.5418 / (2 * np.sin(np.deg2rad(rng.uniform(6, 44, (n, 60)))))
    tt = np.rad2deg(2 * np.arcsin(1.5418 / (2 * d)))
    inten = 100 * rng.random((n, 60)) ** 3
    y = render_profiles(tt, inten, np.ones_like(tt, bool), FILE_PROFILE, gen, d_spacing=d).numpy()
    grid = np.linspace(5.0, 90.0, FILE_PROFILE.n_points)
    paths = []
    for i in range(n):
        counts = rng.poisson(100 + 10_000 * y[i])
        path = folder / f"p{i:04d}.xy"
        body = "\n".join(f"{a:.3f} {c}" for a, c in zip(grid, counts, strict=True))
        path.write_text("# 2theta counts\n" + body + "\n")
        paths.append(path)
    return paths


def register(name: str, model: torch.nn.Module, config: dict, metadata: dict, folder: Path):
    """Log a model as a training run would: config.yaml, checkpoint/, the pt2 model."""
    import mlflow

    with mlflow.start_run():
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        mlflow.log_artifact(str(folder / "config.yaml"))
        ckpt = save_checkpoint(folder / name / "model", model, metadata=metadata)
        mlflow.log_artifacts(str(ckpt.parent), artifact_path="checkpoint")
        example = np.random.default_rng(0).random((2, 4501)).astype(np.float32)
        tracking.log_model(model, example, name, version_tags={"task": config["task"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=float, default=0.25, help="phase CNN width (paper 1.0)")
    parser.add_argument("--end-to-end", type=int, default=100, help="files for step 3")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "files").mkdir()
        start = time.perf_counter()
        paths = write_files(root / "files", args.files)
        print(f"wrote {len(paths)} files in {time.perf_counter() - start:.1f} s")
        tracking.configure(f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "artifacts")
        subset = {"subset": SubsetConfig().model_dump(mode="json")}  # paper grid, CuKa
        classes = ["triclinic", "monoclinic", "orthorhombic", "tetragonal", "rhombohedral",
                   "hexagonal", "cubic"]  # fmt: skip
        acnn = ACNN(ACNNConfig(n_points=4501, n_classes=7, position_channel=True))
        register("bench-acnn", acnn, {**subset, "task": "lattice-system"},
                 {"class_names": classes}, root)  # fmt: skip
        phase = PhaseCNN(PhaseCNNConfig(n_points=4501, n_materials=5, width=args.width))
        materials = [str(1000000 + i) for i in range(5)]
        register("bench-phase", phase, {**subset, "task": "phase-fractions"},
                 {"materials": materials, "formulas": ["X"] * 5}, root)  # fmt: skip
        start = time.perf_counter()
        models = [load_model_ensemble(n) for n in ("bench-acnn", "bench-phase")]
        print(f"loaded both registered models in {time.perf_counter() - start:.1f} s")
        grid = models[0].grid

        start = time.perf_counter()
        x = np.stack([prepare_pattern(read_pattern(p), grid).x for p in paths])
        read_s = time.perf_counter() - start
        print(
            f"read + preprocess: {len(paths) / read_s:8.0f} patterns/s "
            f"({read_s:.2f} s for {len(paths)}, {FILE_PROFILE.n_points} points -> 4501)"
        )
        for model in models:
            model.predict(x[:8])  # warm-up
            start = time.perf_counter()
            model.predict(x)
            seconds = time.perf_counter() - start
            print(f"{model.task:>16}: {len(x) / seconds:8.0f} patterns/s ({seconds:.2f} s)")
        subset_paths = paths[: args.end_to_end]
        rates = {}
        for indexing in (False, True):  # side by side: the classifier joined with indexing
            start = time.perf_counter()
            _, failed = predict_files(subset_paths, models, indexing=indexing)
            rates[indexing] = len(subset_paths) / (time.perf_counter() - start)
            print(
                f"end to end (CLI path, both models, one file at a time, no plots, indexing "
                f"{'on' if indexing else 'off'}): {rates[indexing]:.1f} patterns/s, "
                f"{len(failed)} failed"
            )
        print(f"indexing on / off: {rates[True] / rates[False]:.2f} of the rate")


if __name__ == "__main__":
    main()
