"""The independent truth of the quantification benchmark stays independent and unchanged.

``benchmarks/quantify_truth.py`` must import nothing from ``xrdpipe`` (otherwise the benchmark
tests that our refinement inverts our own renderer); the committed scans, truth and phases
must match ``benchmarks/quantify/SHA256SUMS``; the truth's draws and physics helpers are
checked against values written out here.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "benchmarks" / "quantify_truth.py"
DATA = ROOT / "benchmarks" / "quantify"


def _generator():
    spec = importlib.util.spec_from_file_location("quantify_truth", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _imported_modules(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", ""))
            in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def test_generator_imports_nothing_from_xrdpipe():
    names = _imported_modules(GENERATOR.read_text())
    assert "numpy" in names and "xrayutilities" in names  # the parser sees the imports
    bad = [n for n in names if n.split(".")[0] == "xrdpipe" or n.startswith(".")]
    assert not bad, f"benchmarks/quantify_truth.py imports {bad}: the truth must stay independent"


def test_import_check_catches_xrdpipe():
    source = "import os\nfrom xrdpipe.refinement import refine\nimport xrdpipe as x\n"
    source += "importlib.import_module('xrdpipe.patterns')\n"
    names = _imported_modules(source)
    assert [n for n in names if n.startswith("xrdpipe")] == [
        "xrdpipe.refinement",
        "xrdpipe",
        "xrdpipe.patterns",
    ]


def test_committed_truth_matches_its_sha256():
    lines = (DATA / "SHA256SUMS").read_text().splitlines()
    listed = {rel for _, rel in (line.split(maxsplit=1) for line in lines)}
    assert {"scans.npz", "truth.json"} <= listed
    assert len([rel for rel in listed if rel.startswith("phases/")]) == 10
    for line in lines:
        digest, rel = line.split(maxsplit=1)
        assert hashlib.sha256((DATA / rel).read_bytes()).hexdigest() == digest, rel


def test_truth_draws_follow_the_design():
    truth = json.loads((DATA / "truth.json").read_text())
    with np.load(DATA / "scans.npz") as data:
        two_theta, counts = data["two_theta"], data["counts"]
    assert hashlib.sha256(counts.tobytes()).hexdigest() == truth["counts_sha256"]
    assert two_theta[0] == 10.0 and two_theta[-1] == 100.0 and len(two_theta) == 4501
    scans = truth["scans"]
    assert len(scans) == counts.shape[0] == 200
    for scan in scans:
        w = [p["weight_fraction"] for p in scan["phases"].values()]
        assert len(w) in (2, 3) and min(w) >= 0.02 - 1e-12 and math.isclose(sum(w), 1.0)
        assert abs(scan["sample_displacement_mm"]) <= 0.15
        assert all(0.8 <= p["march_dollase_r"] <= 1.0 for p in scan["phases"].values())
    # Poisson around a maximum of 1e4 expected counts: the largest count within ~5 sigma
    assert np.all(np.abs(counts.max(axis=1) - 1e4) < 5 * 100 + 50)
    # the phase set: ten named phases, not only cubic ones
    assert len(truth["phases"]) == 10
    assert {"KLaS2", "KYS2", "Al2SiO5", "Mg3Al2Si3O12", "BiSeI", "MgOH2"} <= set(truth["phases"])


def test_hill_howard_scales_by_hand():
    qt = _generator()
    # w = (0.4, 0.6), Z M = (100, 300) g/mol, V = (50, 200) A^3 -> S = w / (Z M V)
    scales = qt.hill_howard_scales(np.array([0.4, 0.6]), np.array([100.0, 300.0]), [50, 200])
    np.testing.assert_allclose(scales, [0.4 / 5000, 0.6 / 60000])
    # and back: w_i = S_i Z_i M_i V_i / sum
    back = scales * np.array([5000.0, 60000.0])
    np.testing.assert_allclose(back / back.sum(), [0.4, 0.6])


def test_equivalent_b_by_hand():
    qt = _generator()
    cif = """data_x
_cell_length_a 4.0
_cell_length_b 5.0
_cell_length_c 6.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_aniso_label
_atom_site_aniso_U_11
_atom_site_aniso_U_22
_atom_site_aniso_U_33
_atom_site_aniso_U_12
_atom_site_aniso_U_13
_atom_site_aniso_U_23
Fe1 0.0100(2) 0.0200(3) 0.0300(4) 0.005 0 0
"""
    # orthogonal cell: U_eq = (U11 + U22 + U33) / 3 = 0.02, B = 8 pi^2 U_eq = 1.5791
    assert qt.equivalent_b(cif)["Fe1"] == pytest.approx(8 * math.pi**2 * 0.02, rel=1e-12)


def test_cell_contents_match_the_formulas():
    pytest.importorskip("xrayutilities")
    qt = _generator()
    # Z M by hand from the formula and Z (g/mol): brucite Mg(OH)2 Z=1 (xrayutilities'
    # default rounding of symmetry positions gave 3 O per cell), BiSeI Z=4 (gave 5 Bi),
    # FeAs Z=4
    expected = {
        "MgOH2": 24.305 + 2 * (15.999 + 1.008),
        "BiSeI": 4 * (208.980 + 78.971 + 126.904),
        "FeAs": 4 * (55.845 + 74.922),
    }
    for name, zm in expected.items():
        crystal = qt.load_crystal(DATA / "phases" / f"{name}.cif")
        assert qt.cell_mass_amu(crystal) == pytest.approx(zm, rel=2e-3), name
    # FeAs has only anisotropic U in its CIF: B comes from U_eq, not 0
    fe_as = qt.load_crystal(DATA / "phases" / "FeAs.cif")
    assert min(b for *_, b in fe_as.lattice.base()) > 0.3
