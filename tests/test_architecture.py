"""The house rules of ``docs/architecture.md``, checked on the source: sizes, layers, names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xrdpipe"
MAX_LINES = 600
"""A module that grows past this holds more than one idea: split it along the idea."""
SCIENCE = (
    "diffraction",
    "evaluation",
    "indexing",
    "models",
    "patterns",
    "readers",
    "refinement",
    "store",
    "structures",
    "training",
)
"""Packages of pure science and data access: no workflow engine, tracking, HTTP or CLI
(``cod`` is the one owner of COD over HTTP)."""
OUTSIDE_WORLD = ("prefect", "mlflow", "typer", "httpx")
PUBLIC_API = {
    "xrdpipe.diffraction": (
        "PeakTable SCALED_INTENSITY_TOL SIMULATOR_VERSION TWO_THETA_TOL apply_strain "
        "has_scattering_factors point_group_rotations project_onto_point_group "
        "reflection_upper_bound sample_strains scattering_coefficients simulate_peaks "
        "strain_conditions wavelength_angstrom"
    ).split(),
    "xrdpipe.patterns": (
        "AugmentConfig MixtureConfig MixtureDataset MixtureSampler PeakArrays ProfileConfig "
        "augment_peak_list augment_profiles eliminate_peaks find_peaks make_fixed_mixture_set "
        "mixture_intensities mixture_loader render_clean render_naive render_peaks "
        "render_profiles scale_peaks scherrer_fwhm_deg shift_patterns split_train_validation "
        "strain_patterns two_theta_grid"
    ).split(),
}
"""Public names recorded before the house restructuring (issue 14); they stay importable."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(name: str) -> str:
    """``xrdpipe.training.loop`` -> ``xrdpipe.training``; ``xrdpipe.config`` -> ``xrdpipe``."""
    parts = name.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return parts[0]


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement, at any depth (lazy imports too)."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_tracking_records_and_never_drives_training() -> None:
    tracking = [p for p in modules() if module_name(p).startswith("xrdpipe.tracking")]
    assert tracking, "no tracking modules found"
    wrong = [
        (module_name(p), module)
        for p in tracking
        for module, _ in imports(p)
        if module.startswith(("xrdpipe.training", "xrdpipe.stages", "xrdpipe.cli"))
    ]
    assert wrong == []


def test_no_private_name_is_imported_across_packages() -> None:
    wrong = []
    for path in [*modules(), *(PACKAGE.parent / "flows").glob("*.py")]:
        importer = module_name(path) if path.is_relative_to(PACKAGE) else "flows"
        for module, names in imports(path):
            if not module.startswith("xrdpipe"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and package_of(module) != package_of(importer):
                wrong.append((importer, module, private))
    assert wrong == []


def test_science_packages_import_no_outside_world() -> None:
    wrong = [
        (module_name(p), module)
        for p in modules()
        if package_of(module_name(p)).removeprefix("xrdpipe.") in SCIENCE
        for module, _ in imports(p)
        if module.split(".")[0] in OUTSIDE_WORLD
    ]
    assert wrong == []


@pytest.mark.parametrize("package", sorted(PUBLIC_API))
def test_public_names_stay_importable(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in PUBLIC_API[package] if not hasattr(module, name)]
    assert missing == []


LOWER_THAN_THE_CATALOG = ("store",)
"""Packages below the catalog: they read the simulation settings
(:mod:`xrdpipe.config.simulation`), never the catalog, presets or settings modules."""


def test_the_store_does_not_import_the_catalog() -> None:
    allowed = {"xrdpipe.config.simulation", "xrdpipe.config.base"}
    wrong = [
        (module_name(p), module)
        for p in modules()
        if package_of(module_name(p)).removeprefix("xrdpipe.") in LOWER_THAN_THE_CATALOG
        for module, _ in imports(p)
        if (module == "xrdpipe.config" or module.startswith("xrdpipe.config."))
        and module not in allowed
    ]
    assert wrong == []


def test_importing_the_store_loads_no_catalog() -> None:
    import subprocess
    import sys

    code = (
        "import sys, xrdpipe.store; "
        "print(sorted(m for m in sys.modules if m.startswith('xrdpipe.config')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent
    ).stdout
    assert out.strip() == "['xrdpipe.config', 'xrdpipe.config.base', 'xrdpipe.config.simulation']"
