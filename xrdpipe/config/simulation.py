"""How a subset's peak lists are simulated: what the store records and fingerprints.

This module sits below the catalog: the store (:mod:`xrdpipe.store`) reads a subset's
simulation settings through :class:`SimulatedSubset` and imports nothing of the catalog.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from xrdpipe.config.base import Frozen


class SymmetrySettings(Frozen):
    """spglib tolerances (as `reference.csv` was made: symprec 0.1, 5 degrees)."""

    symprec: float = Field(default=0.1, gt=0)
    angle_tolerance: float = Field(default=5.0, gt=0)


SCATTERING_DEFAULTS: dict[str, Any] = {
    "scattering": "pymatgen",
    "displacement": "overall",
    "overall_b": 0.0,
}
"""Scattering settings that reproduce pymatgen exactly (left out of dumps and fingerprints)."""


class SimulationConfig(Frozen):
    """How single-phase peak lists are simulated for a subset (paper 002).

    Attributes:
        n_train_strains: strain conditions per material for training (paper: 500).
        n_test_strains: other strain conditions per material for test (paper: 200; 0 for
            a subset whose classifiers draw strain on the fly, e.g. synthetic crystals).
        max_strain: strain amplitude bound (paper: 0.05).
        strain_mode: ``unconstrained`` (paper 002) or ``symmetry`` (keeps the space group).
        wavelength: a pymatgen wavelength name (``CuKa``) or a value in angstrom.
        two_theta_range: degrees.
        debye_waller: apply pymatgen-style Debye-Waller factors (none are known from COD).
        materials_per_chunk: materials per Zarr chunk, i.e. per Dask task.
        scattering: ``pymatgen`` (its real ``f0``: the simulator's exact mode),
            ``anomalous`` (that ``f0`` + ``f' + i f''`` at the wavelength, Chantler tables
            via ``xraydb``) or ``tables`` (Waasmaier-Kirfel's ``f0`` + the same ``f'``,
            ``f''``; see ``docs/simulation.md``).
        displacement: ``overall`` (every site ``overall_b``) or ``cif`` (each site's B read
            from its CIF where given, else ``overall_b``).
        overall_b: one isotropic displacement parameter B for the phase, angstrom^2.
    """

    n_train_strains: int = Field(default=500, ge=1)
    n_test_strains: int = Field(default=200, ge=0)
    max_strain: float = Field(default=0.05, gt=0, lt=0.5)
    strain_mode: Literal["unconstrained", "symmetry"] = "unconstrained"
    wavelength: str | float = "CuKa"
    two_theta_range: tuple[float, float] = (10.0, 80.0)
    debye_waller: bool = False
    materials_per_chunk: int = Field(default=1, ge=1)
    scattering: Literal["pymatgen", "anomalous", "tables"] = "pymatgen"
    displacement: Literal["overall", "cif"] = "overall"
    overall_b: float = Field(default=0.0, ge=0.0, le=30.0)

    @model_serializer(mode="wrap")
    def _without_default_scattering(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dump the scattering settings only when set, so older fingerprints still hold."""
        data = handler(self)
        for name, default in SCATTERING_DEFAULTS.items():
            if isinstance(data, dict) and data.get(name) == default:
                data.pop(name)
        return data

    @field_validator("two_theta_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 <= lo < hi <= 180:
            raise ValueError(f"two_theta_range {value!r} must satisfy 0 <= min < max <= 180")
        return value

    @field_validator("wavelength")
    @classmethod
    def _wavelength(cls, value: str | float) -> str | float:
        if isinstance(value, str):
            from pymatgen.analysis.diffraction.xrd import WAVELENGTHS

            if value not in WAVELENGTHS:
                raise ValueError(f"wavelength {value!r} is not one of {sorted(WAVELENGTHS)}")
        elif value <= 0:
            raise ValueError(f"wavelength {value!r} must be positive (angstrom)")
        return value

    @property
    def wavelength_angstrom(self) -> float:
        """The wavelength in angstrom."""
        if isinstance(self.wavelength, str):
            from pymatgen.analysis.diffraction.xrd import WAVELENGTHS

            return float(WAVELENGTHS[self.wavelength])
        return float(self.wavelength)


class SimulatedSubset(Protocol):
    """What the store needs of a subset (:class:`~xrdpipe.config.catalog.SubsetConfig` is one).

    Attributes:
        simulation: how its peak lists are simulated.
        symmetry: the spglib tolerances of its manifest.
        seed: seeds its strain draws.
    """

    @property
    def simulation(self) -> SimulationConfig: ...

    @property
    def symmetry(self) -> SymmetrySettings: ...

    @property
    def seed(self) -> int: ...

    def model_dump_json(self) -> str:
        """The whole subset as JSON (recorded in the store)."""
        ...
