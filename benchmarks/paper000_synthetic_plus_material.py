"""Paper 000's table, issue 18's second row: ``synthetic+material`` beside ``synthetic-to-real``.

Both columns on one synthetic training set (``--patterns`` patterns, 4 renders a structure,
less the real structures' renders), without the ``strain`` and ``material`` columns::

    nice -n 10 python benchmarks/paper000_synthetic_plus_material.py \\
        --store data/acnn/patterns.zarr --synthetic-manifest data/synthetic/manifest.parquet \\
        --patterns 5000 --out benchmarks/results/paper000_synthetic_plus_material.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from xrdpipe.config import load_catalog
from xrdpipe.stages.classifiers import run_classification_evaluation

SIZE_KEYS = (
    "structures",
    "validation_structures",
    "draws",
    "patterns",
    "real_structures",
    "test_structures",
    "test_draws",
    "render_s",
    "n_folds",
    "n_boot",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="the subset's patterns.zarr")
    parser.add_argument("--subset", default="acnn")
    parser.add_argument("--synthetic-manifest", type=Path, required=True)
    parser.add_argument("--patterns", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    catalog = load_catalog()
    t0 = time.time()
    evaluation = run_classification_evaluation(
        args.store,
        catalog.subset(args.subset),
        catalog.preset("classifier", "cv"),
        "lattice_system",
        protocols=(),
        synthetic_manifest=args.synthetic_manifest,
        synthetic_patterns=args.patterns,
        synthetic_protocols=("synthetic-to-real", "synthetic+material"),
    )
    wall = time.time() - t0
    table = evaluation.table.copy()
    table.columns = [" ".join(str(c) for c in col if c).strip() for col in table.columns]
    print(table.to_string())
    out = {
        "wall_s": wall,
        "table": table.reset_index().to_dict(orient="records"),
        "sizes": {
            p: {k: v for k, v in r.config.items() if k in SIZE_KEYS}
            for p, r in evaluation.results.items()
        },
        "fit_s": {p: r.summary()["fit_s_mean"].to_dict() for p, r in evaluation.results.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False, default=float))
    print(f"wall {wall:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
