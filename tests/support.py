"""What several test modules share: where the shared data is, and the tiny real store.

``tests/conftest.py`` turns these into fixtures (``tiny_store``, ``tiny_store_readonly``,
``one_thread``, ``cod_sample``); test modules import the constants from here, never from
another test module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from xrdpipe.config import (
    ClassifierPreset,
    PhaseFractionPreset,
    ProfileConfig,
    SimulationConfig,
    SubsetConfig,
)


def shared_dir() -> Path:
    """The shared data folder: ``$XRDPIPE_SHARED_DIR`` or ``../shared`` beside the repo."""
    env = os.environ.get("XRDPIPE_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


SHARED_DIR = shared_dir()
"""The shared data folder as found at import."""
COD_SAMPLE = SHARED_DIR / "cod-sample"
"""The COD sample: ``index.json``, ``reference.csv`` and ``cif/``."""
CIF_DIR = COD_SAMPLE / "cif"
"""The sample's CIF files, ``<cod_id>.cif``."""

TINY_IDS = ["1000054", "1009031", "2003120", "2100862", "2242045", "3000024", "9008488"]
DIMENSIONALITY = [3, 3, 2, 3, 3, 2, 3]  # made-up labels for the dimensionality target
TINY_SUBSET = SubsetConfig(
    seed=3,
    simulation=SimulationConfig(
        n_train_strains=10, n_test_strains=4, strain_mode="symmetry", materials_per_chunk=4
    ),
    profile=ProfileConfig(n_points=1501),
)
TINY_PHASE_PRESET = PhaseFractionPreset(
    model={"width": 0.1},
    train={"batch_size": 32, "lr": 2e-3, "epochs": 4, "device": "cpu"},
    split={"epoch_size": 128, "n_validation": 64, "n_test": 96},
)
TINY_CLASSIFIER_PRESET = ClassifierPreset(
    train={
        "batch_size": 16,
        "lr": 3e-3,
        "epochs": 4,
        "early_stopping_patience": None,
        "device": "cpu",
    },
    data={"augment": False},
    baseline={"rf_trees": 10},
)
_STORES: dict[str, Path] = {}


def manifest_row(cod_id: str) -> dict[str, object]:
    """The manifest row of a sample CIF: formulas, symmetry labels and the structure's JSON."""
    from xrdpipe.structures.parse import parse_structure
    from xrdpipe.structures.symmetry import analyse_symmetry

    structure = parse_structure(CIF_DIR / f"{cod_id}.cif")
    info = analyse_symmetry(structure)
    return {
        "cod_id": cod_id,
        "formula": structure.composition.formula,
        "reduced_formula": structure.composition.reduced_formula,
        "space_group_number": info.space_group_number,
        "space_group_symbol": info.space_group_symbol,
        "crystal_system": info.crystal_system,
        "lattice_system": info.lattice_system,
        "structure_json": json.dumps(structure.as_dict()),
    }


def tiny_manifest(ids: list[str]) -> pd.DataFrame:
    """The tiny store's manifest, with made-up dimensionality labels."""
    rows = [
        {**manifest_row(cod_id), "dimensionality": dim}
        for cod_id, dim in zip(ids, DIMENSIONALITY, strict=False)
    ]
    columns = [*list(rows[0])[:-2], "dimensionality", "structure_json"]
    return pd.DataFrame(rows)[columns]


def build_tiny_store(
    root: Path, subset: SubsetConfig = TINY_SUBSET, ids: list[str] = TINY_IDS
) -> Path:
    """A folder with ``manifest.parquet`` and ``patterns.zarr`` (profiles rendered).

    Built once per test session and configuration under ``root``; copy it before writing.
    """
    from xrdpipe.patterns.datasets import render_store_profiles
    from xrdpipe.stages.simulate import run_simulation

    key = f"{subset.fingerprint()}-{len(ids)}"
    if key not in _STORES:
        folder = root / f"store-{key}"
        folder.mkdir(parents=True)
        manifest = tiny_manifest(ids)
        manifest.to_parquet(folder / "manifest.parquet")
        run_simulation(manifest, folder / "patterns.zarr", subset)
        render_store_profiles(folder / "patterns.zarr", subset.profile)
        _STORES[key] = folder
    return _STORES[key]


def small_demo_catalog(
    path: Path, n_materials: int, n_train_strains: int, n_test_strains: int, epochs: int
) -> Path:
    """The packaged catalog with ``demo`` cut to a few materials and strains, ``tiny`` presets."""
    import yaml

    from xrdpipe.config import default_catalog_path

    data = yaml.safe_load(default_catalog_path().read_text())
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    demo = data["subsets"]["demo"]
    demo["sample_size"] = n_materials
    demo["simulation"] |= {
        "n_train_strains": n_train_strains,
        "n_test_strains": n_test_strains,
        "materials_per_chunk": 4,
    }
    demo["profile"] = {"n_points": 1501}
    device = {"device": "cpu", "epochs": epochs}
    data["presets"]["phase_fractions"]["tiny"] = {
        "model": {"width": 0.1},
        "train": {"batch_size": 32, "lr": 2e-3, **device},
        "split": {"epoch_size": 128, "n_validation": 64, "n_test": 96},
    }
    data["presets"]["classifier"]["tiny"] = {
        "model": {"variants": ["paper"]},
        "train": {"batch_size": 16, "lr": 3e-3, "early_stopping_patience": None, **device},
        "data": {"augment": False},
        "baseline": {"rf_trees": 10},
    }
    path.write_text(yaml.safe_dump(data))
    return path
