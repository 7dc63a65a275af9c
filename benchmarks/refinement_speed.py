"""Seconds per scan of the refinement with a 10-phase candidate set, one core.

Scans of 2-3 phases (flat Dirichlet weights, >= 2 wt%) rendered by the engine (K-alpha
doublet, TCH widths, zero shift, displacement, Chebyshev background, Poisson at 1e4
counts), refined with all 10 candidates offered (the baseline) and with the present ones
only (as after a CNN, ``polish``). Prints the median and the weight-fraction MAE; our own
renderer's scans (no independent truth).

    PYTHONPATH=. python benchmarks/refinement_speed.py [n_scans]
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np

from tests.refinement.engine_scan import Planted, cod_structure, engine_scan
from xrdpipe.refinement import RefinementOptions, phase_from_structure, polish, refine

PHASES = (
    "9008565",  # Si, cubic
    "1537412",  # VO2, tetragonal
    "1000054",  # brucite, trigonal (light)
    "2105798",  # KLaS2, trigonal
    "2105803",  # KYS2, isostructural with KLaS2
    "9001833",  # kyanite, triclinic
    "9000618",  # pyrope garnet, cubic, 160 sites
    "2010577",  # BiSeI, orthorhombic, strong absorber
    "9007668",  # FeAs, orthorhombic
    "1009031",  # PdO, tetragonal
)


def main(n_scans: int = 10) -> None:
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    structures = [cod_structure(i) for i in PHASES]
    phases = [
        phase_from_structure(s, i, (10.0, 80.0)) for s, i in zip(structures, PHASES, strict=True)
    ]
    all_seconds, polish_seconds, all_err, polish_err = [], [], [], []
    for scan in range(n_scans):
        k = int(rng.integers(2, 4))
        chosen = rng.choice(len(PHASES), k, replace=False)
        w = rng.dirichlet(np.ones(k))
        w = np.maximum(w, 0.02)
        w /= w.sum()
        planted = Planted(
            weight_fractions=list(w),
            zero_shift_deg=float(rng.uniform(-0.03, 0.03)),
            sample_displacement_mm=float(rng.uniform(-0.1, 0.1)),
            x=list(rng.uniform(0.01, 0.1, k)),
            y=list(rng.uniform(0.0, 0.05, k)),
            seed=scan,
        )
        two_theta, counts = engine_scan([structures[i] for i in chosen], planted)
        truth = dict.fromkeys(PHASES, 0.0) | {
            PHASES[i]: float(v) for i, v in zip(chosen, w, strict=True)
        }
        options = RefinementOptions(background_order=3)
        started = time.perf_counter()
        result = refine(two_theta, counts, phases, options=options)
        all_seconds.append(time.perf_counter() - started)
        got = result.weight_fractions()
        all_err.append(np.mean([abs(got[n] - truth[n]) for n in PHASES if truth[n] > 0]))
        started = time.perf_counter()
        out = polish(two_theta, counts, phases, truth, options=options)
        polish_seconds.append(time.perf_counter() - started)
        got = out.refinement.weight_fractions()
        polish_err.append(np.mean([abs(got[n] - truth[n]) for n in PHASES if truth[n] > 0]))
        print(
            f"scan {scan}: {k} phases, all offered {all_seconds[-1]:.2f} s "
            f"(MAE {100 * all_err[-1]:.2f} wt%), present only {polish_seconds[-1]:.2f} s "
            f"(MAE {100 * polish_err[-1]:.2f} wt%)"
        )
    print(
        f"median s/scan: 10 offered {np.median(all_seconds):.2f}, present only "
        f"{np.median(polish_seconds):.2f}; MAE wt%: {100 * np.mean(all_err):.2f}, "
        f"{100 * np.mean(polish_err):.2f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
