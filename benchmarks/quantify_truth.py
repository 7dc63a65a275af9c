"""Independent truth for the quantification benchmark: powder scans computed by xrayutilities.

This module imports NOTHING from ``xrdpipe`` (``tests/benchmarks/test_quantify_truth.py``
parses its imports to keep it so): the patterns come from `xrayutilities
<https://xrayutilities.sourceforge.io>`_ (its own CIF reader, atomic form factors with
anomalous terms f', f'' at the line energy, Debye-Waller factors from the CIF's B/U_iso,
March-Dollase, fundamental-parameters line profiles with the Cu K-alpha1/K-alpha2 emission
lines, axial divergence, flat-specimen error, sample transparency, receiver slit, tube tails,
specimen displacement and zero error). Otherwise the benchmark would only test that our
refinement inverts our own renderer.

Why xrayutilities and not Dans_Diffraction (both measured, BiSeI, 290 lines, 10-100 degrees
in steps of 0.02): xrayutilities computes the pattern in 2.0 s with a fundamental-parameters
profile, the emission doublet and the displacement/zero convolver; Dans_Diffraction's
``Scatter.powder`` took 4.7 s and has one pseudo-Voigt of a fixed width, no doublet, no
displacement and no axial divergence, so the instrument would have to be written here.

Conventions (also written into ``truth.json``):

* Weight fractions -> intensities by **Hill-Howard**: for a Rietveld scale ``S_i`` on the
  convention ``y = S_i sum_hkl |F_hkl|^2 m_hkl LP(2theta) phi(2theta - 2theta_hkl)`` (F per
  unit cell, electrons), ``w_i = S_i Z_i M_i V_i / sum_j S_j Z_j M_j V_j``; so this module
  sets ``S_i = w_i / (Z_i M_i V_i)`` (:func:`hill_howard_scales`). ``Z_i M_i`` is the mass of
  the unit cell's contents (occupancy-weighted atomic masses from xrayutilities' tables),
  ``V_i`` the cell volume. xrayutilities' ``PowderDiffraction.Calculate`` returns
  ``sum |F|^2 m LP' phi / V^2`` (LP' = (1 + cos^2 2theta)/2 / (sin^2 theta cos theta));
  so the phase's term is ``S_i V_i^2 Calculate_i`` (the factor 1/2 of LP' is common to every
  phase).
* Specimen displacement ``s`` (mm, goniometer radius 240 mm): ``Delta 2theta = -2 s cos(theta)
  / R`` (xrayutilities' displacement convolver); **s > 0 moves peaks to lower 2theta** (the
  sample surface below the focusing circle). The zero error adds ``zero_shift_deg``.
* March-Dollase: axis = the normal of a low-index lattice plane ``(h k l)`` (a reciprocal
  lattice vector), ratio r in 0.8-1 (platy, r < 1), xrayutilities' symmetric-reflection form
  ``((r cos alpha)^2 + sin^2 alpha / r)^(-3/2)`` per reflection of every family.
* Transparency: the absorption convolver with the mixture's linear attenuation coefficient
  (volume-fraction mean of the phases' mu at Cu K-alpha1) times a packing fraction 0.6.
* Counts: the expected pattern (peaks + a smooth background) scaled so that its maximum is
  ``max_counts`` (1e4), then Poisson.

Run ``python benchmarks/quantify_truth.py`` to (re)write ``benchmarks/quantify/`` (the phases,
``scans.npz``, ``truth.json``, ``SHA256SUMS``); ``--check`` verifies the checksums.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "quantify"
PHASE_DIR = OUT_DIR / "phases"
SHARED = Path(os.environ.get("XRDPIPE_SHARED_DIR", "/work/shared"))

PHASES: dict[str, tuple[str, str]] = {
    # lab name: (COD id, why it is in the set)
    "BiSeI": ("2010577", "strong absorber, Bi-bearing, orthorhombic Pnma, 290 lines"),
    "MgOH2": ("1000054", "light scatterer, brucite Mg(OH)2 with H, trigonal P-3m1, platy"),
    "NiAl2O4": ("9005952", "Ni phase, spinel Fd-3m"),
    "FeAs": ("9007668", "Fe phase, westerveldite Pnam; only anisotropic U in the CIF"),
    "Al2SiO5": ("9001833", "kyanite, triclinic P-1, platy, ~630 lines in 10-100 degrees"),
    "KLaS2": ("2105798", "isostructural pair with KYS2, R-3m"),
    "KYS2": ("2105803", "isostructural pair with KLaS2, R-3m"),
    "Mg3Al2Si3O12": ("9000618", "garnet (pyrope), Ia-3d, 160 atoms per cell"),
    "VO2": ("9009089", "monoclinic P21/c (M1), pseudo-rutile, many overlapping lines"),
    "Sr2RuO4": ("2013358", "tetragonal I4/mmm, layered, partial Ti on the Ru site"),
}

SEED = 20261207
N_SCANS = 200
MIN_FRACTION = 0.02
TWO_THETA = (10.0, 100.0, 0.02)
GONIOMETER_RADIUS_MM = 240.0
MAX_COUNTS = 1.0e4
PACKING_FRACTION = 0.6
ZERO_SHIFT_DEG = 0.03
DISPLACEMENT_MM = 0.15
MARCH_DOLLASE_R = (0.8, 1.0)
CRYSTALLITE_NM = (30.0, 300.0)
MICROSTRAIN = (0.0, 1.0e-3)
AXES = ((0, 0, 1), (1, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1))
TT_CUTOFF_MARGIN_DEG = 3.0
AMU_KG = 1.66053906660e-27
CIF_DIGITS = 3
"""Decimals to which xrayutilities rounds symmetry-generated positions when it merges them:
its default 4 keeps 0.3333 and 0.3334 apart (brucite got 3 O per cell instead of 2; BiSeI
5 Bi instead of 4), so the cell contents were wrong; 3 merges them (checked: Z M equals the
CIF formula times Z for all ten phases, `tests/benchmarks/test_quantify_truth.py`)."""


def two_theta_grid() -> np.ndarray:
    """The scans' 2theta grid, degrees (10-100 in steps of 0.02, 4501 points)."""
    lo, hi, step = TWO_THETA
    return np.round(lo + step * np.arange(int(round((hi - lo) / step)) + 1), 6)


# --- phases -----------------------------------------------------------------------------


def copy_phases(source: Path = SHARED / "cod-sample" / "cif") -> None:
    """Copies the ten COD CIFs to ``quantify/phases/<lab name>.cif`` (how a lab gives them)."""
    PHASE_DIR.mkdir(parents=True, exist_ok=True)
    for name, (cod_id, _) in PHASES.items():
        shutil.copyfile(source / f"{cod_id}.cif", PHASE_DIR / f"{name}.cif")


def _loop_rows(text: str, first_tag: str) -> tuple[list[str], list[list[str]]]:
    """Tags and rows of the CIF loop that contains ``first_tag`` (plain tokens only)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower() != "loop_":
            continue
        tags, j = [], i + 1
        while j < len(lines) and lines[j].strip().startswith("_"):
            tags.append(lines[j].strip().split()[0].lower())
            j += 1
        if first_tag not in tags:
            continue
        rows = []
        while (
            j < len(lines) and lines[j].strip() and not lines[j].strip().startswith(("_", "loop_"))
        ):
            rows.append(lines[j].split())
            j += 1
        return tags, rows
    return [], []


def _number(token: str) -> float:
    """A CIF number without its standard uncertainty, ``0.0123(4)`` -> 0.0123."""
    return float(re.sub(r"\(.*\)", "", token))


def equivalent_b(text: str) -> dict[str, float]:
    """B_eq (angstrom^2) per site label from the CIF's anisotropic U table.

    ``U_eq = (1/3) sum_ij U^ij a*_i a*_j (a_i . a_j)`` (Fischer & Tillmanns 1988), ``B = 8
    pi^2 U_eq``; used for sites with no U_iso/B_iso (xrayutilities' reader reads only those).
    """
    tags, rows = _loop_rows(text, "_atom_site_aniso_label")
    if not rows:
        return {}
    cell = [
        _number(re.search(rf"_cell_{k}\s+(\S+)", text).group(1))
        for k in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma")
    ]
    a, b, c = cell[:3]
    ca, cb, cg = (math.cos(math.radians(x)) for x in cell[3:])
    metric = np.array(
        [
            [a * a, a * b * cg, a * c * cb],
            [a * b * cg, b * b, b * c * ca],
            [a * c * cb, b * c * ca, c * c],
        ]
    )
    recip = np.sqrt(np.diag(np.linalg.inv(metric)))  # a*, b*, c*
    index = {t: k for k, t in enumerate(tags)}
    out = {}
    for row in rows:
        u = np.zeros((3, 3))
        for i, j in ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)):
            value = _number(row[index[f"_atom_site_aniso_u_{i + 1}{j + 1}"]])
            u[i, j] = u[j, i] = value
        u_eq = float(np.sum(u * np.outer(recip, recip) * metric)) / 3.0
        out[row[index["_atom_site_aniso_label"]]] = 8 * math.pi**2 * u_eq
    return out


def load_crystal(path: Path):
    """The phase as an xrayutilities ``Crystal``, B from U_iso/B_iso or else from the U_ij."""
    import xrayutilities as xu

    cif = xu.materials.cif.CIFFile(str(path), digits=CIF_DIGITS)
    dataset = cif.data[cif.default_dataset]
    text = path.read_text(errors="replace")
    b_eq = equivalent_b(text)
    if b_eq and all(b == 0 for *_, b in dataset.atoms):
        tags, rows = _loop_rows(text, "_atom_site_fract_x")
        labels = [row[tags.index("_atom_site_label")] for row in rows]
        if len(labels) == len(dataset.atoms):
            dataset.atoms = [
                (el, pos, occ, b_eq.get(label, 0.0))
                for (el, pos, occ, _), label in zip(dataset.atoms, labels, strict=True)
            ]
            dataset.SymStruct()
    return xu.materials.Crystal(path.stem, cif.SGLattice())


def cell_mass_amu(crystal) -> float:
    """``Z M``: the unit cell's contents, occupancy-weighted atomic masses, g/mol (amu)."""
    return float(sum(occ * atom.weight for atom, _, occ, _ in crystal.lattice.base())) / AMU_KG


def cell_volume(crystal) -> float:
    """Unit-cell volume, angstrom^3."""
    return float(crystal.lattice.UnitCellVolume())


def hill_howard_scales(weights: np.ndarray, zm: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Rietveld scales from weight fractions: Hill-Howard ``w_i ∝ S_i Z_i M_i V_i``.

    ``S_i = w_i / (Z_i M_i V_i)`` (any common factor cancels in the fractions); with ``Z M =
    rho V N_A`` this is ``S_i ∝ w_i / (rho_i V_i^2)``: the volume fraction over ``V^2``.
    """
    return np.asarray(weights, float) / (np.asarray(zm, float) * np.asarray(volume, float))


def linear_attenuation_per_m(crystal) -> float:
    """mu of the dense phase at Cu K-alpha1 (xrayutilities' refractive index beta), 1/m."""
    energy = 12398.419843320026 / 1.5405929888444028  # eV
    return 1.0e6 / float(crystal.absorption_length(energy))


# --- draws and scans --------------------------------------------------------------------


def draw_scans(n_scans: int = N_SCANS, seed: int = SEED) -> list[dict]:
    """Per scan: 2-3 phases, flat-Dirichlet weight fractions >= 2 wt%, the instrument draws.

    ``w = m + (1 - k m) D`` with ``D`` ~ Dirichlet(1, ..., 1) is uniform on the simplex with
    every fraction >= m (an affine image of the flat Dirichlet).
    """
    rng = np.random.default_rng(seed)
    names = list(PHASES)
    scans = []
    for index in range(n_scans):
        k = int(rng.integers(2, 4))
        chosen = [names[i] for i in sorted(rng.choice(len(names), k, replace=False))]
        weights = MIN_FRACTION + (1 - k * MIN_FRACTION) * rng.dirichlet(np.ones(k))
        phases = {}
        for name, w in zip(chosen, weights, strict=True):
            phases[name] = {
                "weight_fraction": float(w),
                "march_dollase_axis_hkl": list(AXES[int(rng.integers(len(AXES)))]),
                "march_dollase_r": float(rng.uniform(*MARCH_DOLLASE_R)),
                "crystallite_size_nm": float(np.exp(rng.uniform(*np.log(CRYSTALLITE_NM)))),
                "microstrain": float(rng.uniform(*MICROSTRAIN)),
            }
        scans.append(
            {
                "scan": f"scan_{index:03d}",
                "phases": phases,
                "zero_shift_deg": float(rng.uniform(-ZERO_SHIFT_DEG, ZERO_SHIFT_DEG)),
                "sample_displacement_mm": float(rng.uniform(-DISPLACEMENT_MM, DISPLACEMENT_MM)),
                "background": {
                    "level": float(rng.uniform(0.02, 0.08)),
                    "low_angle": float(rng.uniform(0.0, 1.5)),
                    "decay_deg": float(rng.uniform(8.0, 25.0)),
                    "hump": float(rng.uniform(0.0, 0.6)),
                    "hump_centre_deg": float(rng.uniform(20.0, 35.0)),
                    "slope": float(rng.uniform(-0.3, 0.3)),
                },
                "max_counts": MAX_COUNTS,
                "noise_seed": int(rng.integers(2**31)),
            }
        )
    return scans


def smooth_background(two_theta: np.ndarray, p: dict) -> np.ndarray:
    """A smooth background (relative units): constant + slope + low-angle decay + a hump."""
    x = (two_theta - two_theta[0]) / (two_theta[-1] - two_theta[0])
    return (
        1.0
        + p["slope"] * (x - 0.5)
        + p["low_angle"] * np.exp(-(two_theta - two_theta[0]) / p["decay_deg"])
        + p["hump"] * np.exp(-0.5 * ((two_theta - p["hump_centre_deg"]) / 8.0) ** 2)
    )


def phase_pattern(crystal, draw: dict, scan: dict, mu_per_m: float, two_theta: np.ndarray):
    """xrayutilities' ``sum |F|^2 m LP' phi / V^2`` of one phase in one scan."""
    import xrayutilities as xu

    powder = xu.simpack.Powder(
        crystal,
        1.0,
        crystallite_size_lor=draw["crystallite_size_nm"] * 1e-9,
        strain_gauss=draw["microstrain"],
        preferred_orientation=tuple(draw["march_dollase_axis_hkl"]),
        preferred_orientation_factor=draw["march_dollase_r"],
    )
    settings = {
        "global": {"diffractometer_radius": GONIOMETER_RADIUS_MM * 1e-3},
        "displacement": {
            "specimen_displacement": scan["sample_displacement_mm"] * 1e-3,
            "zero_error_deg": scan["zero_shift_deg"],
        },
        "absorption": {"absorption_coefficient": mu_per_m},
    }
    diffraction = xu.simpack.PowderDiffraction(
        powder,
        tt_cutoff=two_theta[-1] + TT_CUTOFF_MARGIN_DEG,
        enable_simulation=True,
        fpsettings=settings,
    )
    try:
        return np.asarray(diffraction.Calculate(two_theta), dtype=np.float64)
    finally:
        diffraction.close()


def render_scan(scan: dict, crystals: dict, props: dict, two_theta: np.ndarray):
    """Expected counts and Poisson counts of one scan."""
    names = list(scan["phases"])
    w = np.array([scan["phases"][n]["weight_fraction"] for n in names])
    zm = np.array([props[n]["cell_mass_amu"] for n in names])
    vol = np.array([props[n]["cell_volume_A3"] for n in names])
    rho = np.array([props[n]["density_g_cm3"] for n in names])
    mu = np.array([props[n]["mu_per_m"] for n in names])
    volume_fraction = (w / rho) / np.sum(w / rho)
    mu_mix = PACKING_FRACTION * float(volume_fraction @ mu)
    scale = hill_howard_scales(w, zm, vol)
    peaks = np.zeros_like(two_theta)
    for name, s, v in zip(names, scale, vol, strict=True):
        pattern = phase_pattern(crystals[name], scan["phases"][name], scan, mu_mix, two_theta)
        peaks += s * v * v * pattern  # S_i sum |F|^2 m LP phi  (Calculate has 1/V^2)
    peaks /= peaks.max()
    expected = peaks + scan["background"]["level"] * smooth_background(
        two_theta, scan["background"]
    )
    expected *= scan["max_counts"] / expected.max()
    counts = np.random.default_rng(scan["noise_seed"]).poisson(expected)
    scan["mixture_mu_per_m"] = mu_mix
    return expected, counts


def phase_properties(crystals: dict) -> dict:
    """Per phase: Z M, V, density, mu, number of reflections (xrayutilities' values)."""
    props = {}
    for name, crystal in crystals.items():
        zm, vol = cell_mass_amu(crystal), cell_volume(crystal)
        props[name] = {
            "cod_id": PHASES[name][0],
            "why": PHASES[name][1],
            "cell_mass_amu": zm,
            "cell_volume_A3": vol,
            "density_g_cm3": zm / vol / 0.602214076,
            "mu_per_m": linear_attenuation_per_m(crystal),
            "b_iso_A2": sorted({round(float(b), 3) for *_, b in crystal.lattice.base()}),
        }
    return props


def sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def checksum_files() -> list[Path]:
    """The files ``SHA256SUMS`` covers (the truth and the phases as committed)."""
    return [OUT_DIR / "scans.npz", OUT_DIR / "truth.json"] + sorted(PHASE_DIR.glob("*.cif"))


def write_checksums() -> None:
    """Writes ``quantify/SHA256SUMS`` (``sha256sum -c`` format, paths relative to it)."""
    lines = [f"{sha256(p)}  {p.relative_to(OUT_DIR).as_posix()}" for p in checksum_files()]
    (OUT_DIR / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def verify_checksums() -> list[str]:
    """Files whose SHA-256 differs from ``SHA256SUMS`` (empty: all match)."""
    bad = []
    for line in (OUT_DIR / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        if sha256(OUT_DIR / rel) != digest:
            bad.append(rel)
    return bad


def load_truth() -> tuple[np.ndarray, np.ndarray, dict]:
    """``(two_theta, counts[scan, point], truth)`` from ``benchmarks/quantify/``."""
    with np.load(OUT_DIR / "scans.npz") as data:
        two_theta, counts = data["two_theta"], data["counts"]
    return two_theta, counts, json.loads((OUT_DIR / "truth.json").read_text())


def write_xy(
    folder: Path, two_theta: np.ndarray, counts: np.ndarray, names: list[str]
) -> list[Path]:
    """Writes each scan as ``<name>.xy`` (two columns: 2theta, counts); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, row in zip(names, counts, strict=True):
        path = folder / f"{name}.xy"
        np.savetxt(
            path,
            np.column_stack([two_theta, row]),
            fmt=["%.4f", "%d"],
            header="2theta_deg counts; Cu K-alpha1/2",
            comments="# ",
        )
        paths.append(path)
    return paths


def generate(n_scans: int = N_SCANS) -> None:
    """Writes the phases, the scans, the truth and the checksums."""
    import xrayutilities as xu

    xu.config.NTHREADS = 1
    warnings.simplefilter("ignore")
    copy_phases()
    crystals = {name: load_crystal(PHASE_DIR / f"{name}.cif") for name in PHASES}
    props = phase_properties(crystals)
    two_theta = two_theta_grid()
    scans = draw_scans(n_scans)
    counts = np.zeros((n_scans, two_theta.size), dtype=np.int32)
    started = time.perf_counter()
    for i, scan in enumerate(scans):
        _, counts[i] = render_scan(scan, crystals, props, two_theta)
        print(
            f"{scan['scan']}: {', '.join(scan['phases'])} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    np.savez_compressed(OUT_DIR / "scans.npz", two_theta=two_theta, counts=counts)
    truth = {
        "generator": "benchmarks/quantify_truth.py",
        "generator_sha256": sha256(Path(__file__)),
        "library": f"xrayutilities {xu.__version__}",
        "seed": SEED,
        "conventions": {
            "weight_fraction": "Hill-Howard: w_i ∝ S_i Z_i M_i V_i (relative crystalline)",
            "sample_displacement_mm": "Delta 2theta = -2 s cos(theta) / R; s > 0: lower 2theta",
            "goniometer_radius_mm": GONIOMETER_RADIUS_MM,
            "zero_shift_deg": "added to every peak position",
            "march_dollase_axis_hkl": "normal of the lattice plane (h k l)",
            "lines": "xrayutilities CuKa1 1.540593, CuKa2 1.544414 angstrom, I2/I1 = 0.5",
            "profile": "xrayutilities fundamental parameters (defaults: axial 2.5 deg Sollers, "
            "equatorial 0.5 deg, receiver slit 55 um, tube tails) + Lorentzian "
            "crystallite size + Gaussian microstrain",
            "transparency": f"mixture mu (volume-fraction mean) x packing {PACKING_FRACTION}",
            "counts": "expected maximum = max_counts, then Poisson",
        },
        "two_theta": list(TWO_THETA),
        "counts_sha256": hashlib.sha256(counts.tobytes()).hexdigest(),
        "phases": props,
        "scans": scans,
    }
    (OUT_DIR / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    write_checksums()


def main(argv: list[str] | None = None) -> int:
    """Command line: generate, or ``--check`` the checksums."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=N_SCANS)
    parser.add_argument("--check", action="store_true", help="verify SHA256SUMS only")
    args = parser.parse_args(argv)
    if args.check:
        bad = verify_checksums()
        print("checksums: " + ("all match" if not bad else f"differ: {bad}"))
        return 1 if bad else 0
    generate(args.scans)
    return 0


if __name__ == "__main__":
    sys.exit(main())
