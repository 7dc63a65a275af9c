"""Strained crystals and their powder-XRD peak lists (pymatgen's rules, batched over strains)."""

from xrdpipe.diffraction.peaks import (
    SCALED_INTENSITY_TOL,
    SIMULATOR_VERSION,
    TWO_THETA_TOL,
    PeakTable,
    reflection_upper_bound,
    simulate_peaks,
    wavelength_angstrom,
)
from xrdpipe.diffraction.scattering import (
    SITE_B_PROPERTY,
    anomalous_factors,
    has_scattering_factors,
    photon_energy_ev,
    scattering_coefficients,
)
from xrdpipe.diffraction.strain import (
    apply_strain,
    point_group_rotations,
    project_onto_point_group,
    sample_strains,
    strain_conditions,
)

__all__ = [
    "SCALED_INTENSITY_TOL",
    "SIMULATOR_VERSION",
    "SITE_B_PROPERTY",
    "TWO_THETA_TOL",
    "PeakTable",
    "anomalous_factors",
    "apply_strain",
    "has_scattering_factors",
    "photon_energy_ev",
    "point_group_rotations",
    "project_onto_point_group",
    "reflection_upper_bound",
    "sample_strains",
    "scattering_coefficients",
    "simulate_peaks",
    "strain_conditions",
    "wavelength_angstrom",
]
