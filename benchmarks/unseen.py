"""Synthetic-to-real: a classifier of crystal (lattice) systems on real COD structures it never saw.

The test set (:mod:`xrdpipe.evaluation.unseen`): every COD structure of the subsets
``acnn``, ``demo`` and ``hoefer2024`` (their manifests, as ``xrdpipe fetch`` writes them),
de-duplicated with pymatgen's StructureMatcher, labelled by spglib (0.1 A, 5 deg), rendered
measured-like (every instrument effect but preferred orientation) ``--draws`` times each on
the evaluation's own random stream.

Methods, on the same patterns:

* ``synthetic``: a classifier trained on synthetic crystals only, loaded with
  ``xrdpipe.training.classifier_inference.ClassifierPredictor.load(--checkpoint)``;
* ``forest`` and ``acnn-cod``: the material-disjoint random forest (binned patterns) and the
  a-CNN trained on COD: ``--folds`` material-disjoint folds over the test structures, each
  structure predicted by the models trained on the other folds' structures (rendered
  measured-like ``--train-draws`` times each on another stream).

Reported per method: accuracy, balanced accuracy, macro-F1, per-class recall and support,
confusion matrix, space-group top-1/top-5 (``--space-group-checkpoint``), ECE before and
after temperature scaling with bootstrap intervals; paired bootstrap intervals of the accuracy
differences; the one-phase flag's rates on real single-phase patterns, simulated 2-3-phase
mixtures (each phase >= 20 %), amorphous and noise-only scans; the prototype-unseen split
(``--training-manifest``). Writes ``benchmarks/results/unseen.json``.

Usage (offline; the mirror is the shared COD sample)::

    for s in acnn hoefer2024; do xrdpipe fetch $s --mirror $XRDPIPE_SHARED_DIR/cod-sample \\
        --data-dir data/unseen; done
    xrdpipe fetch demo --data-dir data/unseen-demo          # the crystals package
    nice -n 10 python benchmarks/unseen.py --manifest acnn=data/unseen/acnn/manifest.parquet \\
        --manifest hoefer2024=data/unseen/hoefer2024/manifest.parquet \\
        --manifest demo=data/unseen-demo/demo/manifest.parquet \\
        [--checkpoint MODEL --training-manifest data/synthetic/manifest.parquet]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xrdpipe.config import LATTICE_SYSTEMS as CONFIG_LATTICE_SYSTEMS
from xrdpipe.config.presets import ClassifierPreset
from xrdpipe.evaluation import unseen as u
from xrdpipe.evaluation.calibration import (
    calibrated_probabilities,
    ece_interval,
    fit_temperature,
    reliability,
)
from xrdpipe.evaluation.estimators import classical_estimator
from xrdpipe.evaluation.folds import make_folds, validation_part
from xrdpipe.evaluation.ood import (
    TESTS,
    FlagRule,
    amorphous_scans,
    fit_flag_rule,
    one_phase_scores,
)
from xrdpipe.models import ACNNConfig
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.training.classifier import fit_acnn
from xrdpipe.training.mixture_detector import mixture_probability
from xrdpipe.training.splits import bin_patterns

LATTICE_SYSTEMS = list(CONFIG_LATTICE_SYSTEMS)
TRAIN_STREAM = 0xC0D_7A1
"""Seed root of the COD baselines' training renders (not the evaluation's stream)."""


prepare = u.prepare_renders
"""Preparation of rendered scans (:func:`xrdpipe.evaluation.unseen.prepare_renders`)."""
scan = u.rendered_scans
"""Rendered rows as measured patterns (:func:`xrdpipe.evaluation.unseen.rendered_scans`)."""


def method_report(
    name: str,
    y: np.ndarray,
    logits: np.ndarray,
    classes: list[str],
    temperature: float,
    groups: np.ndarray,
    seed: int,
    uncalibrated: np.ndarray | None = None,
) -> dict[str, Any]:
    """Scores of one method; ``uncalibrated``: its logits before calibration where they are
    not ``logits`` at temperature 1 (a space-group model's sums, tempered per group)."""
    raw = calibrated_probabilities(logits if uncalibrated is None else uncalibrated, 1.0)
    cal = calibrated_probabilities(logits, temperature)
    pred = cal.argmax(1)  # a temperature keeps the order
    report = u.classification_report(y, pred, classes)
    report["ece_uncalibrated"] = ece_interval(raw, y, seed=seed).as_dict()
    report["ece_calibrated"] = ece_interval(cal, y, seed=seed).as_dict()
    report["temperature"] = (
        float(temperature) if np.ndim(temperature) == 0 else sorted(set(np.ravel(temperature)))
    )
    report["reliability_calibrated"] = reliability(cal, y)
    report["top2_accuracy"] = u.top_k_accuracy(y, logits, 2)
    print(
        f"  {name}: accuracy {report['accuracy']:.3f}, balanced {report['balanced_accuracy']:.3f}"
        f", macro-F1 {report['macro_f1']:.3f}, ECE {report['ece_uncalibrated']['value']:.3f} -> "
        f"{report['ece_calibrated']['value']:.3f} (T {report['temperature']})",
        flush=True,
    )
    return report


def cod_baselines(
    test: pd.DataFrame,
    peaks: u.PeakLists,
    profile: ProfileConfig,
    y: np.ndarray,
    x_test: np.ndarray,
    draws: int,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Forest and a-CNN, material-disjoint folds over the test structures (cross-fitted)."""
    n_c = len(LATTICE_SYSTEMS)
    y_struct = y[::draws]
    t0 = time.time()
    x_train = prepare(
        u.render_structures(peaks, profile, args.train_draws, args.seed, stream=TRAIN_STREAM),
        profile,
    )
    print(f"  training renders {x_train.shape} in {time.time() - t0:.0f} s", flush=True)
    y_train = np.repeat(y_struct, args.train_draws)
    folds = make_folds(y_struct, 1, "material", args.folds, args.seed)
    rf_logits = np.zeros((len(y), n_c))
    cnn_logits = np.zeros((len(y), n_c))
    val_logits, val_y, val_x = [], [], []
    preset = acnn_preset(args.acnn_minutes, int(x_train.shape[1]))
    step = profile.step_deg
    for fold in folds:
        train_s, val_s = validation_part(fold.train, 1, "material", 0.15, args.seed + fold.index)
        rows = lambda s, k: (s[:, None] * k + np.arange(k)).ravel()  # noqa: E731
        tr, va, te = (
            rows(train_s, args.train_draws),
            rows(val_s, args.train_draws),
            rows(fold.test, draws),
        )
        forest = classical_estimator("random_forest", args.seed, n_jobs=1)
        forest.fit(bin_patterns(x_train[np.r_[tr, va]], 450), y_train[np.r_[tr, va]])
        proba = np.zeros((len(te), n_c))
        proba[:, forest.classes_] = forest.predict_proba(bin_patterns(x_test[te], 450))
        rf_logits[te] = np.log(np.clip(proba, 1e-6, None))
        model, _ = fit_acnn(
            x_train[tr],
            y_train[tr],
            x_train[va],
            y_train[va],
            n_c,
            preset,
            step_deg=step,
            two_theta_start=profile.two_theta_min,
            seed=args.seed + fold.index,
        )
        model.eval()
        with torch.no_grad():
            cnn_logits[te] = model(torch.from_numpy(x_test[te])).numpy()
            val_logits.append(model(torch.from_numpy(x_train[va])).numpy())
        val_y.append(y_train[va])
        val_x.append(x_train[va])
        print(
            f"  fold {fold.index}: {len(tr)} train patterns, {time.time() - t0:.0f} s", flush=True
        )
    return {
        "forest": {"logits": rf_logits},
        "acnn-cod": {
            "logits": cnn_logits,
            "validation_logits": np.concatenate(val_logits),
            "validation_y": np.concatenate(val_y),
            "validation_x": np.concatenate(val_x),
        },
    }


def acnn_preset(minutes: float, n_points: int | None = None) -> ClassifierPreset:
    """The binned a-CNN, no tensor augmentation (the renders vary), ``minutes`` per fit.

    On a grid of ``n_points`` whose last feature map is shorter than the preset's pooling
    windows (a 0.04 deg grid of 1,751 points gives 14), one window per position.
    """
    model: dict[str, Any] = {"variants": ["binned"]}
    if n_points is not None:
        bins = ClassifierPreset().model.pool_bins
        length = ACNNConfig(n_points=n_points, n_classes=2).feature_length
        if length < bins:
            model["pool_bins"] = length
    return ClassifierPreset(
        model=model,
        train={
            "batch_size": 128,
            "lr": 3e-3,
            "epochs": 400,
            "early_stopping_patience": 15,
            "max_minutes": minutes,
            "device": "cpu",
        },
        data={"augment": False},
    )


def synthetic_classifier(profile: ProfileConfig, args: argparse.Namespace) -> dict[str, Any]:
    """A short a-CNN trained on synthetic crystals only, rendered measured-like (a fallback
    while no ``--checkpoint`` exists): its logits function, validation set and manifest."""
    from pymatgen.core import Structure

    from xrdpipe.structures.synthetic import SyntheticConfig, synthesize_structure

    t0 = time.time()
    config = SyntheticConfig(balance_over="lattice_system", n_structures=args.synthetic)
    rows, failed = [], 0
    for i in range(args.synthetic):
        row, _ = synthesize_structure(i, args.seed + 100, config, 0.1, 5.0)
        if row is None:
            failed += 1
        else:
            rows.append(row)
    manifest = pd.DataFrame(rows)
    manifest = manifest[manifest["lattice_system"].isin(LATTICE_SYSTEMS)].reset_index(drop=True)
    structures = [Structure.from_dict(json.loads(j)) for j in manifest["structure_json"]]
    peaks = u.structure_peaks(structures, profile)
    k = args.synthetic_draws
    x = prepare(u.render_structures(peaks, profile, k, args.seed, stream=TRAIN_STREAM + 1), profile)
    y_struct = np.array([LATTICE_SYSTEMS.index(c) for c in manifest["lattice_system"]])
    y = np.repeat(y_struct, k)
    print(
        f"  synthetic: {len(manifest)} structures ({failed} draws quarantined), {x.shape} "
        f"renders in {time.time() - t0:.0f} s",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    is_val = np.repeat(rng.random(len(manifest)) < 0.1, k)
    model, result = fit_acnn(
        x[~is_val],
        y[~is_val],
        x[is_val],
        y[is_val],
        len(LATTICE_SYSTEMS),
        acnn_preset(args.synthetic_minutes),
        step_deg=profile.step_deg,
        two_theta_start=profile.two_theta_min,
        seed=args.seed,
    )
    model.eval()

    def logits(xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate(
                [model(torch.from_numpy(xs[i : i + 512])).numpy() for i in range(0, len(xs), 512)]
            )

    print(
        f"  synthetic a-CNN: {len(result.history)} epochs, best validation loss "
        f"{result.best_val_loss:.3f}, {time.time() - t0:.0f} s",
        flush=True,
    )
    return {
        "model": model,
        "logits_of": logits,
        "validation_x": x[is_val],
        "validation_y": y[is_val],
        "validation_logits": logits(x[is_val]),
        "manifest": manifest,
        "training": {
            "structures": int(len(manifest)),
            "quarantined": failed,
            "draws_per_structure": k,
            "epochs": len(result.history),
            "best_val_loss": float(result.best_val_loss),
            "wall_s": time.time() - t0,
        },
    }


def flag_rates(
    rule: FlagRule,
    scores_of,
    test_x: np.ndarray,
    mix_x: np.ndarray,
    amorphous: np.ndarray,
    noise: np.ndarray,
    mixture_phases: np.ndarray | None = None,
) -> dict[str, Any]:
    """Flagged shares per kind of scan, and which test fired; for the mixtures also per
    number of phases (``mixture_phases``, one per row of ``mix_x``): two phases are the hard
    case."""
    out = {}
    for kind, x in (
        ("single_phase_real", test_x),
        ("mixtures_2_3", mix_x),
        ("amorphous", amorphous),
        ("noise_only", noise),
    ):
        scores = scores_of(x)
        reasons = rule.reasons(scores)
        flagged = np.array([bool(r) for r in reasons])
        by_test = {
            t: float(np.mean([any(r.startswith(t + " ") for r in rs) for rs in reasons]))
            for t in rule.thresholds
        }
        out[kind] = {"n": int(len(x)), "flagged": float(flagged.mean()), "by_test": by_test}
        if kind == "mixtures_2_3" and mixture_phases is not None:
            out[kind]["by_phases"] = {
                str(k): float(flagged[mixture_phases == k].mean())
                for k in np.unique(mixture_phases)
            }
    return out


def _index_one(job: tuple[np.ndarray, np.ndarray, float, float, float]) -> str:
    from xrdpipe.indexing import index_scan

    return index_scan(*job).outcome


def joined_with_indexing(
    methods: dict[str, dict[str, Any]], rendered: np.ndarray, profile: ProfileConfig, y: np.ndarray
) -> dict[str, Any]:
    """Add ``<method>+indexing`` rows: each method's calibrated probabilities joined with the
    test patterns' indexing outcomes (``xrdpipe.indexing.combine``, the packaged table).

    Returns the outcome counts per true class and the indexing time.
    """
    from concurrent.futures import ProcessPoolExecutor

    from xrdpipe.indexing import OUTCOMES, combine, packaged_table

    table = packaged_table("lattice_system")
    tt = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    jobs = [
        (tt, r.astype(np.float64), profile.ka1, profile.ka2, profile.ka2_ratio) for r in rendered
    ]
    t0 = time.time()
    with ProcessPoolExecutor(2) as pool:
        outcomes = list(pool.map(_index_one, jobs, chunksize=16))
    seconds = time.time() - t0
    uncalibrated = {}
    for name in list(methods):
        m = methods[name]
        before = m.get("uncalibrated_logits", m["logits"])
        raw = combine(calibrated_probabilities(before, 1.0), outcomes, table, LATTICE_SYSTEMS)
        uncalibrated[name] = ece_interval(raw, y).as_dict()  # joined without the temperature
        p = calibrated_probabilities(m["logits"], m["temperature"])
        joined = combine(p, outcomes, table, LATTICE_SYSTEMS)
        methods[f"{name}+indexing"] = {
            "logits": np.log(np.maximum(joined, 1e-12)),
            "uncalibrated_logits": np.log(np.maximum(raw, 1e-12)),
            "temperature": 1.0,
        }
    found = np.array(outcomes)
    counts = {
        c: {o: int(((y == k) & (found == o)).sum()) for o in OUTCOMES}
        for k, c in enumerate(LATTICE_SYSTEMS)
    }
    print(f"  indexing: {len(outcomes)} patterns in {seconds:.0f} s (2 processes)", flush=True)
    return {
        "outcomes_per_class": counts,
        "seconds": seconds,
        "table_source": table.source,
        "ece_joined_without_temperature": uncalibrated,
        "outcomes": outcomes,  # per pattern; not written to the JSON
    }


def space_group_model(path: Path, rendered: np.ndarray, profile: ProfileConfig) -> dict[str, Any]:
    """A space-group classifier's calibrated group probabilities on the test renders, and the
    lattice-system method they give (:func:`xrdpipe.structures.hierarchy.system_probabilities`:
    the groups' probabilities summed per lattice system, tempered per group first)."""
    from xrdpipe.structures.hierarchy import system_probabilities
    from xrdpipe.training.classifier_inference import ClassifierPredictor

    predictor = ClassifierPredictor.load(path)
    if predictor.target != "space_group":
        raise SystemExit(f"{path} is a {predictor.target} classifier, not a space-group one")
    xs = np.stack([predictor.prepare(p) for p in scan(rendered, profile)])
    z = predictor.logits(xs)
    t = float((predictor.metadata.get("calibration") or {}).get("temperature") or 1.0)
    groups = list(predictor.classes)
    p = calibrated_probabilities(z, t)
    sums = system_probabilities(p, groups, "lattice_system")
    raw = system_probabilities(calibrated_probabilities(z, 1.0), groups, "lattice_system")
    method = {
        "logits": np.log(np.maximum(sums, 1e-12)),
        "uncalibrated_logits": np.log(np.maximum(raw, 1e-12)),
        "temperature": 1.0,
    }
    method.update(prepared=xs, predictor=predictor, logits_fn=predictor.logits, flag_temperature=t)
    return {"path": path, "groups": groups, "probabilities": p, "temperature": t, "method": method}


def space_group_report(
    model: dict[str, Any], test: pd.DataFrame, draws: int, outcomes: list[str] | None
) -> dict[str, Any]:
    """Space-group top-1 and top-5 of a space-group classifier on the test renders, alone and
    joined with indexing at the group level (``packaged_table("space_group")``), and the
    crystal-system accuracy its sums give.

    A real structure whose space group is not among the classifier's classes (a group with
    too few synthetic crystals, excluded in training) counts as wrong; ``covered`` is the share
    of patterns whose group is a class, and ``*_covered`` the figures on those alone.
    """
    from sklearn.metrics import balanced_accuracy_score

    from xrdpipe.config import CRYSTAL_SYSTEMS
    from xrdpipe.indexing import combine, packaged_table
    from xrdpipe.structures.hierarchy import system_of_space_group, system_probabilities

    groups = model["groups"]
    index = {c: i for i, c in enumerate(groups)}
    numbers = np.repeat([int(g) for g in test["space_group_number"]], draws)
    y = np.array([index.get(str(g), -1) for g in numbers])
    y_crystal = np.array([CRYSTAL_SYSTEMS.index(system_of_space_group(g)) for g in numbers])
    covered = y >= 0
    answers = {"alone": model["probabilities"]}
    if outcomes is not None:
        table = packaged_table("space_group")
        answers["with_indexing"] = combine(model["probabilities"], outcomes, table, groups)
    report: dict[str, Any] = {
        "checkpoint": str(model["path"]),
        "temperature": model["temperature"],
        "n_classes": len(groups),
        "n_patterns": int(len(y)),
        "covered": float(covered.mean()),
        "chance_top1": 1.0 / len(groups),
    }
    for name, p in answers.items():
        top = np.argsort(-p, axis=1)[:, :5]
        hit1, hit5 = top[:, 0] == y, (top == y[:, None]).any(axis=1)
        crystal = system_probabilities(p, groups, "crystal_system").argmax(1)
        report[name] = {
            "top1": float(hit1.mean()),
            "top5": float(hit5.mean()),
            "top1_covered": float(hit1[covered].mean()) if covered.any() else math.nan,
            "top5_covered": float(hit5[covered].mean()) if covered.any() else math.nan,
            "crystal_system": u.classification_report(y_crystal, crystal, list(CRYSTAL_SYSTEMS)),
            "crystal_system_balanced": float(balanced_accuracy_score(y_crystal, crystal)),
        }
    return report


def log_to_mlflow(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """One run in ``xrdpipe/synthetic-to-real`` through the tracking module's evaluation runs:
    the options as parameters, each method's scalars as metrics, the JSON as an artifact."""
    from xrdpipe import tracking

    tracking.configure(args.mlflow)
    spec = {"target": "lattice_system", "draws": args.draws, "folds": args.folds}
    run_id = tracking.start_grid_run(
        "cod-subsets", "unseen", spec, results["run"]["args"], experiment="synthetic-to-real"
    )
    metrics = {}
    for name, m in results["methods"].items():
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            metrics[f"{name}/{key}"] = m[key]
        metrics[f"{name}/ece_uncalibrated"] = m["ece_uncalibrated"]["value"]
        metrics[f"{name}/ece_calibrated"] = m["ece_calibrated"]["value"]
    for name, f in results["flag"].items():
        for kind, r in f["rates"].items():
            metrics[f"{name}/flagged/{kind}"] = r["flagged"]
    for pair, interval in results["comparisons"].items():
        metrics[f"difference/{pair.replace(' ', '')}"] = interval["value"]
    from xrdpipe.evaluation.calibration_plots import plot_flag_rates, plot_reliability

    folder = args.out.parent
    diagrams = {n: m["reliability_calibrated"] for n, m in results["methods"].items()}
    plots = [
        plot_reliability(diagrams, folder / "unseen_reliability.png"),
        plot_flag_rates(results["flag"], folder / "unseen_flag.png"),
    ]
    metrics = {k.replace("+", "_plus_"): v for k, v in metrics.items()}  # MLflow's name rules
    tracking.finish_grid_run(run_id, [args.out, *plots], metrics)
    print(f"MLflow run {run_id} ({args.mlflow})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--checkpoint", type=Path, help="the synthetic classifier")
    parser.add_argument("--training-manifest", type=Path, help="its training manifest")
    parser.add_argument(
        "--space-group-checkpoint", type=Path, help="a space-group classifier: top-1 and top-5"
    )
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--train-draws", type=int, default=16)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--acnn-minutes", type=float, default=1.5)
    parser.add_argument("--mixtures", type=int, default=300)
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        help="train a short synthetic a-CNN on this many synthetic crystals (without --checkpoint)",
    )
    parser.add_argument("--synthetic-draws", type=int, default=4)
    parser.add_argument("--synthetic-minutes", type=float, default=10.0)
    parser.add_argument("--mlflow", help="log the result to this MLflow tracking URI")
    parser.add_argument("--save-checkpoint", type=Path, help="where the short model goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="first N structures only (a quick check)")
    parser.add_argument(
        "--no-indexing",
        action="store_true",
        help="skip the '+indexing' rows (each method joined with the patterns' indexing)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/unseen.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    t_start = time.time()
    manifests = {}
    for item in args.manifest:
        name, _, path = item.partition("=")
        manifests[name] = pd.read_parquet(path)
    frame = u.manifest_structures(manifests)
    test = u.label_structures(u.deduplicate_structures(frame))
    test = test[test["lattice_system"].isin(LATTICE_SYSTEMS)].reset_index(drop=True)
    if args.limit:
        test = test.iloc[: args.limit].reset_index(drop=True)
    print(
        f"test set: {len(frame)} manifest rows, {len(test)} distinct structures "
        f"({test['lattice_system'].value_counts().to_dict()})",
        flush=True,
    )
    predictor = None
    grid_from = args.checkpoint or args.space_group_checkpoint  # the scans match its grid
    if grid_from is not None:
        from xrdpipe.training.classifier_inference import ClassifierPredictor

        loaded = ClassifierPredictor.load(grid_from)
        predictor = loaded if args.checkpoint is not None else None
        g = loaded.grid
        base = ProfileConfig(
            two_theta_min=g.two_theta_min, two_theta_max=g.two_theta_max, n_points=g.n_points
        )
        print(f"  grid from {grid_from}: {loaded.target}, {len(loaded.classes)} classes, {g}")
    else:
        base = ProfileConfig()
    profile = u.measured_like_profile(base)
    peaks = u.structure_peaks(list(test["structure"]), profile)
    draws = args.draws
    t0 = time.time()
    rendered = u.render_structures(peaks, profile, draws, args.seed)
    print(f"  test renders {rendered.shape} in {time.time() - t0:.0f} s", flush=True)
    x_test = prepare(rendered, profile)
    y_struct = np.array([LATTICE_SYSTEMS.index(c) for c in test["lattice_system"]])
    y = np.repeat(y_struct, draws)
    groups = np.repeat(np.arange(len(test)), draws)
    mixtures, weights, index, members = u.mixture_peaks(peaks, args.mixtures, args.seed)
    n_phases = (members >= 0).sum(axis=1)
    raw = {
        "mixtures_2_3": u.render_structures(
            mixtures, profile, 1, args.seed + 1, weights=weights, phase_index=index
        ),
    }
    tt = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    raw["amorphous"] = amorphous_scans(tt, args.mixtures, args.seed + 2)
    raw["noise_only"] = amorphous_scans(tt, args.mixtures, args.seed + 3, hump=False)
    mix_x, amorphous, noise = (prepare(raw[k], profile) for k in raw)
    methods: dict[str, dict[str, Any]] = {}
    unavailable: dict[str, str] = {}
    if predictor is not None:
        order = [predictor.classes.index(c) for c in LATTICE_SYSTEMS]

        def checkpoint_logits(xs: np.ndarray) -> np.ndarray:
            return predictor.logits(xs)[:, order]

        xs = np.stack([predictor.prepare(p) for p in scan(rendered, profile)])
        methods["synthetic"] = {
            "logits": checkpoint_logits(xs),
            "prepared": xs,
            "predictor": predictor,
            "logits_fn": checkpoint_logits,
        }
        calibration = predictor.metadata.get("calibration") or {}
        if calibration.get("temperature"):
            methods["synthetic"]["temperature"] = float(calibration["temperature"])
        else:  # no synthetic validation logits stored: fit on the other half of structures
            half = groups % 2 == 0
            z = methods["synthetic"]["logits"]
            t_even, t_odd = fit_temperature(z[half], y[half]), fit_temperature(z[~half], y[~half])
            methods["synthetic"]["temperature_per_row"] = np.where(half, t_odd, t_even)
            unavailable["synthetic_temperature"] = (
                "the checkpoint stores no temperature: fitted on the other half of the real "
                f"structures (even/odd index; T = {t_even:.3f} / {t_odd:.3f})"
            )
    elif args.synthetic:
        m = synthetic_classifier(profile, args)
        m["logits"] = m["logits_of"](x_test)
        methods["synthetic-acnn-short"] = m
    else:
        unavailable["synthetic"] = "no --checkpoint and no --synthetic given"
    space_group = None
    if args.space_group_checkpoint is not None:  # its sums are a lattice-system method too
        space_group = space_group_model(args.space_group_checkpoint, rendered, profile)
        methods["synthetic-sg"] = space_group["method"]
    methods.update(cod_baselines(test, peaks, profile, y, x_test, draws, args))

    results: dict[str, Any] = {"methods": {}, "comparisons": {}, "flag": {}}
    for m in methods.values():
        if "validation_logits" in m:
            m["temperature"] = fit_temperature(m["validation_logits"], m["validation_y"])
        elif "temperature_per_row" in m:
            m["temperature"] = m["temperature_per_row"][:, None]
        else:
            m["temperature"] = float(m.get("temperature", 1.0))
    outcomes = None
    if not args.no_indexing:
        results["indexing"] = joined_with_indexing(methods, rendered, profile, y)
        outcomes = results["indexing"].pop("outcomes")
    print("results (lattice system, real COD structures never seen in training):")
    for name, m in methods.items():
        t = m["temperature"]
        before = m.get("uncalibrated_logits")
        results["methods"][name] = method_report(
            name, y, m["logits"], LATTICE_SYSTEMS, t, groups, args.seed, before
        )
    for a in methods:
        for b in methods:
            if a < b or a == b:
                continue
            pa, pb = methods[a]["logits"].argmax(1), methods[b]["logits"].argmax(1)
            interval = u.paired_bootstrap(y, pa, pb, groups, seed=args.seed)
            results["comparisons"][f"{a} - {b}"] = interval.as_dict()
            print(f"  {a} - {b}: {interval.value:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]")
    for name, m in methods.items():
        t = m["temperature"]
        if "prepared" in m:  # a checkpoint: its own preparation, rule on even structures
            half = groups % 2 == 0
            ck, t_flag = m["predictor"], m.get("flag_temperature", t)
            others = {
                k: np.stack([ck.prepare(p) for p in scan(v, profile)]) for k, v in raw.items()
            }

            def scores_ck(
                x: np.ndarray, ck: Any = ck, m: dict = m, t: Any = t_flag
            ) -> dict[str, np.ndarray]:
                mixture = None
                if ck.detector is not None:  # the mixture detector saved beside it
                    mixture = mixture_probability(ck.detector, x)
                return one_phase_scores(
                    x,
                    profile.step_deg,
                    logits=m["logits_fn"](x),
                    temperature=float(np.median(t)),
                    mixture=mixture,
                )

            stored = (ck.metadata.get("calibration") or {}).get("flag_rule")
            if stored:  # the rule predict uses; every real structure is a test structure
                rule, fitted_on, singles = FlagRule.from_dict(stored), "stored", m["prepared"]
            else:
                rule = fit_flag_rule(scores_ck(m["prepared"][half]))
                fitted_on = "single-phase renders of the even-indexed real structures"
                singles = m["prepared"][~half]
            results["flag"][name] = {
                "rule": rule.as_dict(),
                "fitted_on": fitted_on,
                "rates": flag_rates(
                    rule,
                    scores_ck,
                    singles,
                    others["mixtures_2_3"],
                    others["amorphous"],
                    others["noise_only"],
                    n_phases,
                ),
            }
            continue
        if "validation_x" not in m:
            continue

        def scores_of(x: np.ndarray, m: dict = m, t: float = t) -> dict[str, np.ndarray]:
            if "logits_of" in m:
                return one_phase_scores(
                    x, profile.step_deg, logits=m["logits_of"](x), temperature=t
                )
            return one_phase_scores(x, profile.step_deg)

        without_detector = tuple(t for t in TESTS if t != "mixture")
        tests = without_detector if "logits_of" in m else ("sharpness", "n_peaks")
        rule = fit_flag_rule(scores_of(m["validation_x"]), tests=tests)
        results["flag"][name] = {
            "rule": rule.as_dict(),
            "fitted_on": "single-phase validation renders of the training distribution",
            "rates": flag_rates(rule, scores_of, x_test, mix_x, amorphous, noise, n_phases),
        }
        if "logits_of" in m:  # each test alone at the whole budget, to choose the rule
            results["flag"][name]["single_tests"] = {
                test: flag_rates(
                    fit_flag_rule(scores_of(m["validation_x"]), tests=(test,)),
                    scores_of,
                    x_test,
                    mix_x,
                    amorphous,
                    noise,
                )
                for test in without_detector
            }
    for name, f in results["flag"].items():
        for kind, r in f["rates"].items():
            phases = f", by phases {r['by_phases']}" if "by_phases" in r else ""
            print(
                f"  flag ({name}) {kind}: {r['flagged']:.3f} of {r['n']} ({r['by_test']}){phases}"
            )
    training_manifest = None
    if args.training_manifest is not None:
        training_manifest = pd.read_parquet(args.training_manifest)
    elif "synthetic-acnn-short" in methods:
        training_manifest = methods["synthetic-acnn-short"]["manifest"]
        results["synthetic_training"] = methods["synthetic-acnn-short"]["training"]
    if training_manifest is not None:
        unseen = u.unseen_prototypes(test, training_manifest)
        mask = np.repeat(unseen, draws)
        results["prototype_unseen"] = {
            name: {
                "n_structures": int(unseen.sum()),
                "unseen": u.classification_report(
                    y[mask], m["logits"][mask].argmax(1), LATTICE_SYSTEMS
                ),
                "seen": u.classification_report(
                    y[~mask], m["logits"][~mask].argmax(1), LATTICE_SYSTEMS
                ),
            }
            for name, m in methods.items()
        }
    if args.save_checkpoint is not None and "synthetic-acnn-short" in methods:
        from xrdpipe.models.checkpoints import save_checkpoint

        m = methods["synthetic-acnn-short"]
        pre = {
            "two_theta_min": profile.two_theta_min,
            "two_theta_max": profile.two_theta_max,
            "n_points": profile.n_points,
            "wavelength": profile.ka1,
            "ka_doublet": True,
            "background_subtraction": True,
        }
        calibration = {
            "temperature": float(m["temperature"]),
            "flag_rule": results["flag"]["synthetic-acnn-short"]["rule"],
        }
        saved = save_checkpoint(
            args.save_checkpoint,
            m["model"],
            metadata={
                "task": "lattice_system",
                "class_names": LATTICE_SYSTEMS,
                "variant": "binned",
                "preprocess": pre,
                "calibration": calibration,
            },
        )
        print(f"  checkpoint: {saved}")
    results["test_set"] = {
        "subsets": {k: int(len(v)) for k, v in manifests.items()},
        "manifest_rows": int(len(frame)),
        "structures": int(len(test)),
        "draws_per_structure": draws,
        "patterns": int(len(y)),
        "support_structures": test["lattice_system"].value_counts().to_dict(),
        "dropped_by_spglib": test.attrs.get("dropped", {}),
        "profile": json.loads(profile.model_dump_json()),
    }
    if space_group is not None:
        results["space_group"] = sg = space_group_report(space_group, test, draws, outcomes)
        print(f"  space group ({sg['n_classes']} classes), {sg['covered']:.3f} of the patterns "
              "with a group among them:")  # fmt: skip
        for name in ("alone", "with_indexing"):
            if name in sg:
                r = sg[name]
                print(
                    f"    {name}: top-1 {r['top1']:.3f}, top-5 {r['top5']:.3f}; crystal system "
                    f"{r['crystal_system']['accuracy']:.3f} (balanced "
                    f"{r['crystal_system_balanced']:.3f})"
                )
    else:
        unavailable["space_group_top1_top5"] = "no --space-group-checkpoint given"
    results["unavailable"] = unavailable
    results["run"] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "wall_s": time.time() - t_start,
        "machine": platform.node(),
        "torch_threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print(f"wrote {args.out} ({time.time() - t_start:.0f} s)")
    if args.mlflow:
        log_to_mlflow(args, results)
    assert math.isfinite(results["run"]["wall_s"])


if __name__ == "__main__":
    main()
