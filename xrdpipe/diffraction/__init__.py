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
from xrdpipe.diffraction.quantitative import (
    MicroabsorptionWarning,
    brindley_factors,
    cell_mass,
    hill_howard_weight_fractions,
    linear_absorption_coefficient,
    particle_absorption_factor,
    particle_absorption_grid,
    weight_mode_scale,
)
from xrdpipe.diffraction.scattering import (
    SITE_B_PROPERTY,
    anomalous_factors,
    form_factor_fit,
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
    "MicroabsorptionWarning",
    "SCALED_INTENSITY_TOL",
    "SIMULATOR_VERSION",
    "SITE_B_PROPERTY",
    "TWO_THETA_TOL",
    "PeakTable",
    "anomalous_factors",
    "apply_strain",
    "brindley_factors",
    "cell_mass",
    "form_factor_fit",
    "has_scattering_factors",
    "hill_howard_weight_fractions",
    "linear_absorption_coefficient",
    "particle_absorption_factor",
    "particle_absorption_grid",
    "photon_energy_ev",
    "point_group_rotations",
    "project_onto_point_group",
    "reflection_upper_bound",
    "sample_strains",
    "scattering_coefficients",
    "simulate_peaks",
    "strain_conditions",
    "wavelength_angstrom",
    "weight_mode_scale",
]
