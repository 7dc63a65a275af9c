"""``benchmarks/quantify.py`` keeps the results already recorded when it adds methods."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _harness():
    spec = importlib.util.spec_from_file_location("quantify_bench", ROOT / "benchmarks/quantify.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_keeps_other_methods_and_their_run(tmp_path):
    old = {
        "date": "d0",
        "commit": "c0",
        "load_average": {"before": [9.0], "after": [3.0]},
        "command": "refine run",
        "results": {"independent": {"refine": {"figures": {"mae": 5.4}}}},
        "per_scan": {"scans": ["s0", "s1"], "independent": {"refine": [{"a": 1}]}},
    }
    path = tmp_path / "quantify.json"
    path.write_text(json.dumps(old))
    new = {
        "date": "d1",
        "commit": "c1",
        "results": {
            "independent": {"cnn": {"figures": {"mae": 11.0}, "run": {"commit": "c1"}}},
            "engine": {"cnn": {"figures": {"mae": 13.0}, "run": {"commit": "c1"}}},
        },
        "per_scan": {"scans": ["s0"], "independent": {"cnn": [{"b": 2}]}, "engine": {"cnn": []}},
    }
    merged = _harness().merge_record(path, new)
    assert merged["commit"] == "c1"
    refine = merged["results"]["independent"]["refine"]
    assert refine["figures"] == {"mae": 5.4}
    assert refine["run"] == {
        "date": "d0",
        "commit": "c0",
        "load_average": {"before": [9.0], "after": [3.0]},
        "command": "refine run",
    }
    assert merged["results"]["independent"]["cnn"]["figures"] == {"mae": 11.0}
    assert merged["results"]["engine"]["cnn"]["run"] == {"commit": "c1"}
    assert merged["per_scan"] == {
        "scans": ["s0", "s1"],
        "independent": {"refine": [{"a": 1}], "cnn": [{"b": 2}]},
        "engine": {"cnn": []},
    }


def test_a_rerun_replaces_the_same_method(tmp_path):
    path = tmp_path / "quantify.json"
    old = {
        "results": {"engine": {"cnn": {"figures": {"mae": 1.0}, "run": {"commit": "c0"}}}},
        "per_scan": {"scans": ["s0"], "engine": {"cnn": [{"x": 0}]}},
    }
    path.write_text(json.dumps(old))
    new = {
        "results": {"engine": {"cnn": {"figures": {"mae": 2.0}, "run": {"commit": "c1"}}}},
        "per_scan": {"scans": ["s0"], "engine": {"cnn": [{"x": 1}]}},
    }
    merged = _harness().merge_record(path, new)
    assert merged["results"]["engine"]["cnn"] == {"figures": {"mae": 2.0}, "run": {"commit": "c1"}}
    assert merged["per_scan"]["engine"]["cnn"] == [{"x": 1}]
