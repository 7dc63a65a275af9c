"""Quantification benchmark on independent truth (issue 17): weight fractions of 2-3 phases.

The scans (``benchmarks/quantify/``) were computed by xrayutilities in
``benchmarks/quantify_truth.py``, which shares no code with xrdpipe; the ten candidate phases
are the lab-named CIFs in ``benchmarks/quantify/phases/``. For comparison the same phases and
the same draws (weight fractions, zero shift, displacement, crystallite sizes) are rendered
by xrdpipe's own engine (``tests/refinement/engine_scan.py``), so the gap between "our
refinement inverts our renderer" and "our refinement on someone else's physics" is visible.

Methods:
    refine      ``xrdpipe.refinement.refine`` with all ten phases offered (the baseline).
    cnn         ``xrdpipe.stages.quantify`` (the network ensemble), branch ``quantify``.
    cnn+refine  the same with ``refine=True`` (the network's phases polished).

Metrics (fixed in advance in issue 17), in wt%:
    mae              mean |w_est - w_true| over (scan, present phase) pairs;
    absent_mean      mean over scans of the total estimate on absent phases;
    largest_absent_ok  share of scans whose largest absent phase is <= 2 wt%;
    right_set        share of scans whose phases above 1 wt% are exactly the present ones;
    coverage         share of present-phase truths within +-2 sigma of the estimate;
    median_s         median seconds per scan (the per-scan part only).

    PYTHONPATH=. python benchmarks/quantify.py [--scans N] [--methods refine,cnn,cnn+refine]
        [--data independent,engine] [--out benchmarks/results/quantify.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "quantify.json"
PRESENT = 0.01
"""A phase counts as present above 1 wt% (issue 17)."""
LARGEST_ABSENT = 0.02
"""The largest absent phase must stay at or below 2 wt% (issue 17)."""
BARS = {
    "mae": "<= 2 wt%",
    "absent_mean": "<= 1 wt%",
    "largest_absent_ok": ">= 95 % of scans",
    "right_set": ">= 95 %",
    "coverage": "85-98 %",
    "median_s": "<= 2 s per scan",
}


def _truth_module():
    spec = importlib.util.spec_from_file_location("quantify_truth", HERE / "quantify_truth.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


QT = _truth_module()


# --- scans -------------------------------------------------------------------------------


def engine_scans(truth: dict, two_theta: np.ndarray, n_scans: int) -> np.ndarray:
    """The same draws rendered by xrdpipe's engine (counts, Poisson at the same maximum)."""
    from tests.refinement.engine_scan import Planted, engine_scan
    from xrdpipe.structures.parse import parse_structure

    structures = {name: parse_structure(QT.PHASE_DIR / f"{name}.cif") for name in truth["phases"]}
    out = np.zeros((n_scans, two_theta.size))
    for i, scan in enumerate(truth["scans"][:n_scans]):
        names = list(scan["phases"])
        draws = [scan["phases"][n] for n in names]
        # Scherrer: Lorentzian FWHM X / cos(theta) with X = lambda / D (radians)
        x = [float(np.degrees(1.5406 / (10.0 * d["crystallite_size_nm"]))) for d in draws]
        planted = Planted(
            weight_fractions=[d["weight_fraction"] for d in draws],
            zero_shift_deg=scan["zero_shift_deg"],
            sample_displacement_mm=scan["sample_displacement_mm"],
            x=x,
            y=[0.0] * len(names),
            max_counts=scan["max_counts"],
            two_theta_range=(float(two_theta[0]), float(two_theta[-1])),
            n_points=two_theta.size,
            seed=scan["noise_seed"] % (2**31),
        )
        grid, counts = engine_scan([structures[n] for n in names], planted)
        out[i] = np.interp(two_theta, grid, counts)
    return out


# --- methods -----------------------------------------------------------------------------


def refinement_phases(names: list[str], two_theta: np.ndarray, scattering: str):
    """The ten candidates as refinement phases (``scattering``: ``tables`` or ``anomalous``
    with the CIFs' B, or ``pymatgen``: real f0, no B, the engine's default)."""
    from xrdpipe.refinement import phase_from_structure
    from xrdpipe.structures.displacement import attach_displacements
    from xrdpipe.structures.parse import parse_structure

    options = {"scattering": scattering, "displacement": "cif"} if scattering != "pymatgen" else {}
    span = (float(two_theta[0]), float(two_theta[-1]))
    phases = []
    for n in names:
        path = QT.PHASE_DIR / f"{n}.cif"
        structure = parse_structure(path)
        if options:  # the sites' B from the CIF (pymatgen keeps none), as the fetch stage does
            structure = attach_displacements(structure, path.read_text(errors="replace"))
        phases.append(phase_from_structure(structure, n, span, **options))
    return phases


def run_refine(two_theta, counts, names, phases, log) -> list[dict]:
    """Method (a): the refinement with every candidate offered."""
    from xrdpipe.refinement import RefinementOptions, refine

    rows = []
    for i, y in enumerate(counts):
        started, cpu = time.perf_counter(), time.process_time()
        try:
            result = refine(two_theta, y, phases, options=RefinementOptions())
        except KeyboardInterrupt:  # SIGTERM/Ctrl-C: keep the scans done so far
            log(f"  stopped after {i} scans")
            break
        seconds = time.perf_counter() - started
        rows.append(
            {
                "estimate": {p.name: p.weight_fraction for p in result.phases},
                "sigma": {p.name: p.weight_fraction_esd for p in result.phases},
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                "rwp": result.rwp,
                "zero_shift_deg": result.zero_shift_deg,
                "sample_displacement_mm": result.sample_displacement_mm,
            }
        )
        log(
            f"  refine {i}: {seconds:.2f} s (cpu {rows[-1]['cpu_seconds']:.2f}), "
            f"Rwp {result.rwp:.3f}"
        )
    return rows


def run_cnn(
    two_theta, counts, names, refine_too: bool, log, phases: Path | None = None, settings=None
) -> list[dict] | str:
    """Methods (b)/(c): ``xrdpipe.stages.quantify`` on the scans written as ``.xy`` files.

    ``phases`` (default the benchmark's CIFs) and ``settings`` (default ``Settings()``) pick
    the model: the ensemble is keyed by the phase folder and the data directory's store.
    """
    try:
        from xrdpipe.stages import quantify as stage
    except ImportError:
        return (
            "not run: xrdpipe.stages.quantify is not on this branch yet (branch `quantify`, "
            "issue 17); merge it and rerun with --methods cnn,cnn+refine"
        )
    from xrdpipe.config.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        paths = QT.write_xy(Path(tmp) / "scans", two_theta, counts, names[: len(counts)])
        result = stage.quantify(
            paths,
            phases or QT.PHASE_DIR,
            settings or Settings(),
            refine=refine_too,
            log=log,
        )
    seconds = {Path(str(q.scan)).stem: float(q.seconds) for q in result.scans}
    key, sigma = ("refined_wt_percent", "refined_sigma") if refine_too else ("wt_percent", "sigma")
    by_scan: dict[str, dict] = {}
    for row in result.rows:
        value, error = row[key], row[sigma]
        if value is None and refine_too:  # a failed refinement: the CNN's answer stands
            value, error = row["wt_percent"], row["sigma"]
        if value is None:  # e.g. the amorphous row without an internal standard
            continue
        # the stage names a scan by its source (the file's path); phases by file stem
        entry = by_scan.setdefault(Path(str(row["scan"])).stem, {"estimate": {}, "sigma": {}})
        entry["estimate"][row["phase"]] = float(value) / 100.0
        entry["sigma"][row["phase"]] = float(error if error is not None else np.nan) / 100.0
    return [
        by_scan[Path(p).stem] | {"seconds": seconds.get(Path(p).stem, result.seconds_per_scan)}
        for p in paths
    ]


def merge_record(path: Path, record: dict) -> dict:
    """``record`` over the results already in ``path``, per (data, method).

    Each (data, method) entry keeps the run that made it (date, commit, load, command); an
    entry of an older file without one gets that file's.
    """
    if not path.is_file():
        return record
    old = json.loads(path.read_text())
    run_keys = ("date", "commit", "load_average", "command")
    old_run = {k: old[k] for k in run_keys if k in old}
    merged = dict(record)
    results: dict[str, dict] = {}
    per_scan: dict = {"scans": max(old["per_scan"]["scans"], record["per_scan"]["scans"], key=len)}
    for source in (old, record):
        for data, methods in source.get("results", {}).items():
            for method, entry in methods.items():
                if isinstance(entry, dict) and "run" not in entry:
                    entry = entry | {"run": old_run}
                results.setdefault(data, {})[method] = entry
        for data, methods in source.get("per_scan", {}).items():
            if data != "scans":
                per_scan.setdefault(data, {}).update(methods)
    merged["results"], merged["per_scan"] = results, per_scan
    return merged


# --- metrics -----------------------------------------------------------------------------


def metrics(rows: list[dict], scans: list[dict], candidates: list[str]) -> dict:
    """The issue's figures (wt% and shares) of one method on one set of scans."""
    errors, within, absent, largest, right = [], [], [], [], []
    for row, scan in zip(rows, scans, strict=False):
        truth = {n: scan["phases"].get(n, {}).get("weight_fraction", 0.0) for n in candidates}
        est = {n: float(row["estimate"].get(n, 0.0)) for n in candidates}
        sig = {n: float(row["sigma"].get(n, np.nan)) for n in candidates}
        present = [n for n in candidates if truth[n] > 0]
        missing = [n for n in candidates if truth[n] == 0]
        for n in present:
            errors.append(abs(est[n] - truth[n]))
            within.append(bool(abs(est[n] - truth[n]) <= 2 * sig[n]))
        absent.append(sum(est[n] for n in missing))
        largest.append(max((est[n] for n in missing), default=0.0))
        right.append({n for n in candidates if est[n] > PRESENT} == set(present))
    return {
        "scans": len(absent),
        "mae": 100 * float(np.mean(errors)),
        "absent_mean": 100 * float(np.mean(absent)),
        "largest_absent_ok": float(np.mean(np.array(largest) <= LARGEST_ABSENT)),
        "largest_absent_max": 100 * float(np.max(largest)),
        "right_set": float(np.mean(right)),
        "coverage": float(np.mean(within)),
        "median_s": float(np.median([r["seconds"] for r in rows])),
        "median_cpu_s": float(np.median([r.get("cpu_seconds", np.nan) for r in rows])),
    }


def per_phase_bias(rows: list[dict], scans: list[dict], candidates: list[str]) -> dict:
    """Mean signed error (wt%) per phase where present: where a physics difference shows."""
    out = {}
    for n in candidates:
        d = [
            row["estimate"][n] - scan["phases"][n]["weight_fraction"]
            for row, scan in zip(rows, scans, strict=False)
            if n in scan["phases"]
        ]
        if d:
            out[n] = {
                "bias": 100 * float(np.mean(d)),
                "mae": 100 * float(np.mean(np.abs(d))),
                "n": len(d),
            }
    return out


def instrument_recovery(rows: list[dict], scans: list[dict]) -> dict:
    """Refined zero shift and displacement against the drawn ones (sign conventions)."""
    z = np.array(
        [[r["zero_shift_deg"], s["zero_shift_deg"]] for r, s in zip(rows, scans, strict=False)]
    )
    d = np.array(
        [
            [r["sample_displacement_mm"], s["sample_displacement_mm"]]
            for r, s in zip(rows, scans, strict=False)
        ]
    )
    return {
        "displacement_corr": float(np.corrcoef(d[:, 0], d[:, 1])[0, 1]),
        "displacement_slope": float(np.polyfit(d[:, 1], d[:, 0], 1)[0]),
        "displacement_mae_mm": float(np.mean(np.abs(d[:, 0] - d[:, 1]))),
        "zero_mae_deg": float(np.mean(np.abs(z[:, 0] - z[:, 1]))),
    }


def commit() -> str:
    """The commit measured (``+dirty`` when the tree has uncommitted changes other than the
    results this benchmark writes)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def print_table(results: dict) -> None:
    """One line per (data, method)."""
    print(
        f"{'data':12s} {'method':11s} {'MAE':>6s} {'absent':>7s} {'lgst<=2':>8s} "
        f"{'set':>6s} {'cover':>6s} {'s/scan':>7s} {'cpu s':>6s} {'n':>4s}"
    )
    for data, methods in results.items():
        for method, m in methods.items():
            if isinstance(m, str):
                print(f"{data:12s} {method:11s} {m}")
                continue
            f = m["figures"]
            print(
                f"{data:12s} {method:11s} {f['mae']:6.2f} {f['absent_mean']:7.2f} "
                f"{100 * f['largest_absent_ok']:7.1f}% {100 * f['right_set']:5.1f}% "
                f"{100 * f['coverage']:5.1f}% {f['median_s']:7.2f} {f['median_cpu_s']:6.2f} "
                f"{f['scans']:4d}"
            )
    print("bars (CNN+refine, independent): " + "; ".join(f"{k} {v}" for k, v in BARS.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Quantification on independent truth")
    parser.add_argument("--scans", type=int, default=200, help="first N scans (quick run)")
    parser.add_argument("--methods", default="refine,cnn,cnn+refine")
    parser.add_argument(
        "--data", default="independent,engine", help="in this order; e.g. engine,independent"
    )
    parser.add_argument(
        "--engine-scans", type=int, default=None, help="first N scans for the engine data"
    )
    parser.add_argument(
        "--scattering",
        default="tables",
        choices=["tables", "anomalous", "pymatgen"],
        help="refinement phases' scattering on the independent scans (engine scans: pymatgen, "
        "as rendered)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--phases",
        type=Path,
        default=None,
        help="CNN methods: the phase folder the model is keyed by (default the benchmark's CIFs)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CNN methods: XRDPIPE data directory (model, store, MLflow; default the settings')",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="write only this run's results (default: merge into --out per data and method)",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly, keep results
    log = (lambda *_: None) if args.quiet else (lambda m: print(m, flush=True))
    bad = QT.verify_checksums()
    if bad:
        raise SystemExit(f"benchmarks/quantify/ differs from SHA256SUMS: {bad}")
    two_theta, counts, truth = QT.load_truth()
    scans = truth["scans"][: args.scans]
    names = [s["scan"] for s in scans]
    candidates = list(truth["phases"])
    methods = [m for m in args.methods.split(",") if m]
    load_before = os.getloadavg()
    measured = commit()  # at the start: the code that ran
    settings = None
    if args.data_dir is not None:
        from xrdpipe.config.settings import Settings

        settings = Settings(data_dir=args.data_dir)
    results: dict[str, dict] = {}
    raw: dict[str, dict] = {}
    for data in [d for d in args.data.split(",") if d]:
        if data == "independent":
            y, scattering = counts[: args.scans].astype(np.float64), args.scattering
        else:
            n_engine = min(args.engine_scans or args.scans, args.scans)
            y, scattering = engine_scans(truth, two_theta, n_engine), "pymatgen"
        results[data], raw[data] = {}, {}
        for method in methods:
            log(f"{data} / {method} ({len(y)} scans)")
            if method == "refine":
                phases = refinement_phases(candidates, two_theta, scattering)
                rows = run_refine(two_theta, y, names, phases, log)
            else:
                rows = run_cnn(
                    two_theta, y, names, method == "cnn+refine", log, args.phases, settings
                )
            if isinstance(rows, str):
                print(f"{data} / {method}: {rows}")
                results[data][method] = rows
                continue
            entry = {
                "figures": metrics(rows, scans, candidates),
                "per_phase": per_phase_bias(rows, scans, candidates),
            }
            if method == "refine":
                entry["scattering"] = scattering
                entry["instrument"] = instrument_recovery(rows, scans)
            results[data][method] = entry
            entry["run"] = {"date": datetime.now(UTC).isoformat(timespec="seconds")}
            raw[data][method] = [
                {k: r[k] for k in ("estimate", "sigma", "seconds", "cpu_seconds", "rwp") if k in r}
                for r in rows
            ]
    print_table(results)
    record = {
        "benchmark": "benchmarks/quantify.py",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": measured,
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "command": "python benchmarks/quantify.py " + " ".join(argv or sys.argv[1:]),
        "truth": {
            "library": truth["library"],
            "generator_sha256": truth["generator_sha256"],
            "counts_sha256": truth["counts_sha256"],
        },
        "bars": BARS,
        "results": results,
        "per_scan": {"scans": names, **raw},
    }
    for methods_of in results.values():
        for entry in methods_of.values():
            if isinstance(entry, dict):
                entry["run"] = entry["run"] | {
                    k: record[k] for k in ("commit", "load_average", "command")
                }
    if not args.replace:
        record = merge_record(args.out, record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
