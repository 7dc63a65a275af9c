"""The indexing outcome table: how often each lattice's patterns index as what.

Usage: ``python benchmarks/indexing.py [--structures N] [--seed S] [--workers W]``

Draws ``N`` synthetic crystals with the project's generator (``synthesize_structure``,
balanced over the seven lattice systems, seed ``S``: not a seed any training store uses),
renders each once measured-like (``measured_like_profile``: K-alpha doublet, zero shift,
displacement, TCH widths, background, counting noise; on a random stream of its own), finds
its lines and cells (``xrdpipe.indexing.index_scan``) and counts the outcomes per lattice
system and per crystal system. Writes the counts to ``xrdpipe/indexing/data/outcomes.json``
(the table ``predict`` and ``benchmarks/unseen.py`` use to join indexing with a
classifier) and the rates and timings to ``benchmarks/results/indexing.json``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TABLE = REPO / "xrdpipe" / "indexing" / "data" / "outcomes.json"
RESULTS = REPO / "benchmarks" / "results" / "indexing.json"
STREAM = 0x1DE8
"""The rendering's seed root (neither the evaluation's nor a training stream)."""


def _draw(args: tuple[int, int]) -> dict | None:
    from xrdpipe.config.synthetic import SyntheticConfig
    from xrdpipe.structures.synthetic import synthesize_structure

    index, seed = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row, _ = synthesize_structure(
            index, seed, SyntheticConfig(balance_over="lattice_system"), 0.1, 5.0
        )
    if row is None:
        return None
    return {k: row[k] for k in ("structure_json", "lattice_system", "crystal_system")}


def _index(args: tuple[np.ndarray, np.ndarray, float, float]) -> tuple[str, int, float]:
    from xrdpipe.indexing import index_scan

    two_theta, intensity, ka1, ka2 = args
    t0 = time.perf_counter()
    found = index_scan(two_theta, intensity, ka1, ka2, 0.5)
    return found.outcome, found.n_lines, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--structures", type=int, default=1400, help="draws (some fail)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from pymatgen.core import Structure
    from quantify import commit  # the benchmarks' one commit lookup (``+dirty`` if edited)

    from xrdpipe.evaluation import unseen as u
    from xrdpipe.indexing import OUTCOMES

    measured = commit()  # before the table is written
    t_start = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for r in pool.map(_draw, [(i, args.seed) for i in range(args.structures)]) if r]
    t_draw = time.time() - t_start
    print(f"{len(rows)} of {args.structures} draws kept in {t_draw:.0f} s", flush=True)
    structures = [Structure.from_dict(json.loads(r["structure_json"])) for r in rows]
    profile = u.measured_like_profile()
    peaks = u.structure_peaks(structures, profile)
    rendered = u.render_structures(peaks, profile, 1, args.seed, stream=STREAM)
    two_theta = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    jobs = [(two_theta, r.astype(np.float64), profile.ka1, profile.ka2) for r in rendered]
    with ProcessPoolExecutor(args.workers) as pool:
        found = list(pool.map(_index, jobs, chunksize=16))
    seconds = np.array([f[2] for f in found])
    tables, rates = {}, {}
    for target in ("lattice_system", "crystal_system"):
        counts: dict[str, Counter] = {}
        for row, (outcome, _, _) in zip(rows, found, strict=True):
            counts.setdefault(row[target], Counter())[outcome] += 1
        tables[target] = {
            "target": target,
            "counts": {c: {o: int(n[o]) for o in OUTCOMES} for c, n in sorted(counts.items())},
            "source": (
                f"benchmarks/indexing.py --structures {args.structures} --seed {args.seed}: "
                f"{len(rows)} synthetic crystals (balanced over lattice systems), one "
                "measured-like render each (Cu K-alpha doublet, 10-80 deg)"
            ),
        }
        rates[target] = {
            c: {o: round(n[o] / sum(n.values()), 3) for o in OUTCOMES} | {"n": sum(n.values())}
            for c, n in sorted(counts.items())
        }
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(json.dumps({"tables": tables}, indent=1) + "\n")
    result = {
        "commit": measured,
        "structures": len(rows),
        "draws": args.structures,
        "seed": args.seed,
        "outcome_rates": rates,
        "seconds_per_scan": {
            "median": float(np.median(seconds)),
            "p90": float(np.quantile(seconds, 0.9)),
        },
        "lines_per_scan_median": float(np.median([f[1] for f in found])),
        "wall_s": time.time() - t_start,
        "workers": args.workers,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for c, r in rates["lattice_system"].items():
        print(f"  {c:13s} " + " ".join(f"{o} {r[o]:.2f}" for o in OUTCOMES) + f" (n {r['n']})")
    print(
        f"indexing {np.median(seconds):.2f} s per scan (median); wrote {args.table} and "
        f"{args.out} ({time.time() - t_start:.0f} s)"
    )


if __name__ == "__main__":
    main()
