"""A lab's phase set as one subset: the defaults for measured lab scans, each with its reason.

:func:`phase_set_subset` is the catalog entry a lab would otherwise write by hand
(``docs/patterns.md``, "A lab's set-up"): ``source: phases`` (a folder of CIF files, each
file one phase named by its stem) with the simulation and the profile set for weighed
mixtures measured on a Bragg-Brentano diffractometer with a Cu tube.

**Filters.** The lab chose its phases: nothing is dropped for being organic, a polymer or
disordered (``allow_partial_occupancy``: solid solutions and mixed sites are common in real
phases), and no two phases are merged by formula and space group (two polymorphs of one
formula in one space group stay two phases); only the 500-site bound stays.

**Simulation** (the stored peak lists):

- ``strain_mode: symmetry``, ``max_strain: 0.01``: each phase's cell is jittered by at most
  ±1 % with its space group kept, the spread of refined cells of one phase between samples
  and labs (solid solution, temperature, stoichiometry); paper 002's 5 % unconstrained strain
  moves peaks by more than a phase's own pattern spacing at high angle and breaks symmetry.
- ``scattering: tables``: f0 + f′ + i f″ at the wavelength, f0 from the Waasmaier-Kirfel
  tables and f′, f″ from Chantler's (both via ``xraydb``): at Cu Kα, Ni's f′ ≈ −3 e lowers
  |f|² by ~20 %, Bi's f″ ≈ 8.8 e raises it; weight fractions read from intensities are
  biased without it. pymatgen's f0 fit (mode ``anomalous``) is off for some heavy elements
  (La +1.2 e at sin θ/λ = 0.1 Å⁻¹, Y −0.9 e at 0.5: KLaS2's (009) 12 % too strong).
- ``displacement: cif``, ``overall_b``: :data:`OVERALL_B`: each site's B (= 8π²U) from the CIF
  where given, else one overall B of 0.5 Å², a typical room-temperature value of ordered
  inorganic solids (B ≈ 0.3-1 Å²): it lowers high-angle intensities by exp(−2B sin²θ/λ²),
  22 % at 100° 2θ (Cu Kα).
- ``wavelength`` and ``two_theta_range`` follow the profile (:func:`simulation_wavelength`;
  the range widened by :data:`RANGE_MARGIN_DEG` each side so that peaks just outside the scan
  still put their tails, their K-alpha2 line and their shifted positions on the grid).
- ``n_train_strains``/``n_test_strains``: :data:`N_TRAIN_STRAINS`/:data:`N_TEST_STRAINS`.
  With ±1 % jitter the strain conditions lie close together: 200 training conditions per
  phase (0.6 of them train, 0.4 validate) sample that range at ~0.01 % steps, finer than
  the engine's zero shift and displacement move peaks, and 50 held-out conditions give
  50 x N test patterns. A symmetry strain re-uses the phase's reflections (only the cell
  changes), so the cost is per phase more than per condition: 10 small phases (2-24
  sites) simulated 200 + 50 conditions in 26.5 s on 2 workers at a load average of 13.7
  (300 + 100: 8 s at a load of 2.3), the cluster start included; their store is 39 MB
  (796 peaks at most). Paper 002's 500 + 200 would make it ~3x larger for nothing at this
  jitter.

**Profile** (the rendering of training mixtures, :class:`~xrdpipe.patterns.ProfileConfig`):

- lines: Cu Kα1 1.54056 Å, Kα2 1.54439 Å, ratio 0.5 (``ka_doublet``), what a lab tube without
  a Kα1 monochromator emits; a scan's own lines replace them (``--instrument``);
- grid: 10-100° 2θ, 4501 points (0.02° steps, a common lab step), unless a scan says
  otherwise;
- ``crystallite_size_nm``: 20-200 nm, the sizes of lab powders whose peaks are broadened at
  all (above ~200 nm the instrument's width dominates; below 20 nm nanopowders);
- instrument: goniometer radius 240 mm (PANalytical X'Pert/Empyrean; Bruker D8: 217.5-300),
  fixed divergence slit, no monochromator; **sample displacement** ±0.15 mm (a sample
  surface set by hand in a back-loaded holder), Δ2θ = −2 s cos θ / R, s > 0 (surface above
  the focusing circle) moves peaks to lower 2θ: ∓0.07° at 10° for R 240 mm; **zero shift**
  ±0.05° (2θ_obs = 2θ_Bragg + zero shift: an aligned goniometer); **TCH pseudo-Voigt
  widths** (Caglioti U, V, W for the instrument's Gaussian part; Lorentzian X from each
  phase's Scherrer size, Y tan θ microstrain; η from the TCH formula, not drawn);
  **March-Dollase** preferred orientation r 0.8-1 along a random low-index axis per phase
  (r 1: random powder; 0.8: mild plate texture of a side- or back-loaded powder);
  **Chebyshev background** (order 3) on top of a low-angle exponential (air scatter,
  ≤ 10 % of the maximum); **Poisson counting noise** at 1,000-40,000 counts at the
  strongest point (a relative noise of 0.5-3 % there, lab scans of minutes to an hour).

Mixtures (the preset :data:`PHASE_SET_PRESET` of ``catalog.yaml``): weight fractions
(``fraction_mode: weight``: each phase's ``intensity_raw`` times w/(ρV²), the Hill-Howard
convention) and distinct phases (``phase_draw: distinct``: a weighed mixture holds each phase
once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xrdpipe.config.catalog import Filters, SubsetConfig
from xrdpipe.config.simulation import SimulationConfig
from xrdpipe.patterns.config import (
    CU_KA1,
    CU_KA2,
    CU_KA_MEAN,
    KA2_KA1_RATIO,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    MarchDollaseConfig,
    ProfileConfig,
    TCHWidthConfig,
)

PHASE_SET_PRESET = "phase-set"
"""The phase-fraction preset of a phase set (``catalog.yaml``): weight fractions, distinct
phases, a CPU budget for an ensemble of three on 2 cores in 30 minutes."""
PHASE_SET_GPU_PRESET = "phase-set-gpu"
"""The same on a GPU: paper 002's width and more epochs."""

N_TRAIN_STRAINS = 200
"""Training strain conditions per phase (see the module docstring)."""
N_TEST_STRAINS = 50
"""Held-out test strain conditions per phase."""
MAX_STRAIN = 0.01
"""±1 % symmetry-preserving lattice jitter."""
OVERALL_B = 0.5
"""The overall isotropic displacement parameter, Å², of a phase whose CIF gives none."""
RANGE_MARGIN_DEG = 2.0
"""Peak lists are simulated this far beyond each end of the profile's range, degrees: the
K-alpha2 line (+0.4° at 100°), ±1 % strain (±1.4° at 100°) and the shifts (±0.1°) of a peak
just outside still reach the grid."""
CU_MEAN_RTOL = 1e-4
"""A doublet's weighted mean within this of pymatgen's ``CuKa`` is simulated as ``CuKa``."""

LAB_FILTERS = Filters(
    allow_partial_occupancy=True,
    exclude_organic=False,
    exclude_polymers=False,
    deduplicate=False,
)
"""A lab's own phases: none dropped by kind, none merged (see the module docstring)."""

LAB_INSTRUMENT = InstrumentConfig(
    goniometer_radius_mm=240.0,
    divergence_slit="fixed",
    monochromator_two_theta_deg=None,
    sample_displacement_mm=(-0.15, 0.15),
    widths=TCHWidthConfig(),
    preferred_orientation=MarchDollaseConfig(ratio=(0.8, 1.0), max_axis_index=1),
    chebyshev_background=ChebyshevBackgroundConfig(order=3),
    amorphous_hump=None,
    counting_noise=CountingNoiseConfig(max_counts=(1e3, 4e4)),
)
"""A Bragg-Brentano lab diffractometer with its sample effects (see the module docstring)."""

LAB_PROFILE = ProfileConfig(
    two_theta_min=10.0,
    two_theta_max=100.0,
    n_points=4501,
    crystallite_size_nm=(20.0, 200.0),
    background_amplitude=(0.0, 0.1),
    ka_doublet=True,
    ka1=CU_KA1,
    ka2=CU_KA2,
    ka2_ratio=KA2_KA1_RATIO,
    zero_shift_deg=(-0.05, 0.05),
    instrument=LAB_INSTRUMENT,
)
"""A Cu lab scan's profile, 10-100° in 0.02° steps (see the module docstring)."""


def simulation_wavelength(profile: ProfileConfig) -> str | float:
    """The wavelength the peak lists are simulated at, for ``profile``'s lines.

    A doublet's weighted mean ``(ka1 + r ka2) / (1 + r)`` (the rendering places each line from
    the d-spacings; the intensities' Lorentz-polarisation and scattering factors are taken at
    the mean), ``"CuKa"`` when that is pymatgen's Cu K-alpha; one line: ``ka1``.
    """
    if not profile.ka_doublet:
        return float(profile.ka1)
    mean = (profile.ka1 + profile.ka2_ratio * profile.ka2) / (1.0 + profile.ka2_ratio)
    if abs(mean - CU_KA_MEAN) <= CU_MEAN_RTOL * CU_KA_MEAN:
        return "CuKa"
    return float(mean)


def phase_set_simulation(profile: ProfileConfig) -> SimulationConfig:
    """The simulation of a phase set for ``profile``: the module docstring's defaults."""
    low = max(0.0, profile.two_theta_min - RANGE_MARGIN_DEG)
    high = min(179.0, profile.two_theta_max + RANGE_MARGIN_DEG)
    return SimulationConfig(
        n_train_strains=N_TRAIN_STRAINS,
        n_test_strains=N_TEST_STRAINS,
        max_strain=MAX_STRAIN,
        strain_mode="symmetry",
        wavelength=simulation_wavelength(profile),
        two_theta_range=(low, high),
        materials_per_chunk=2,
        scattering="tables",
        displacement="cif",
        overall_b=OVERALL_B,
    )


def phase_set_subset(
    phases: Path | Sequence[Path],
    profile: ProfileConfig | None = None,
    seed: int = 0,
) -> SubsetConfig:
    """The subset of a lab's phase set: ``source: phases`` with the lab defaults.

    Args:
        phases: a folder of CIF files, or a list of CIF files (each file one phase).
        profile: the instrument's profile (e.g. from a scan,
            :func:`xrdpipe.readers.instrument.profile_from_scan` on :data:`LAB_PROFILE`);
            ``None``: :data:`LAB_PROFILE`. The simulation's wavelength and range follow it.
        seed: seeds the strain draws and everything random downstream.

    Returns:
        The subset; its ``phases`` are absolute paths.
    """
    profile = LAB_PROFILE if profile is None else profile
    if isinstance(phases, (str, Path)):
        where: Path | list[Path] = Path(phases).resolve()
        shown = where.name
    else:
        where = [Path(p).resolve() for p in phases]
        shown = f"{len(where)} CIF files"
    return SubsetConfig(
        description=f"A lab's phase set ({shown}): lab-scan defaults of xrdpipe.config.phase_set",
        source="phases",
        phases=where,
        filters=LAB_FILTERS,
        seed=seed,
        simulation=phase_set_simulation(profile),
        profile=profile,
    )


__all__ = [
    "CU_MEAN_RTOL",
    "LAB_FILTERS",
    "LAB_INSTRUMENT",
    "LAB_PROFILE",
    "MAX_STRAIN",
    "N_TEST_STRAINS",
    "N_TRAIN_STRAINS",
    "OVERALL_B",
    "PHASE_SET_GPU_PRESET",
    "PHASE_SET_PRESET",
    "RANGE_MARGIN_DEG",
    "phase_set_simulation",
    "phase_set_subset",
    "simulation_wavelength",
]
