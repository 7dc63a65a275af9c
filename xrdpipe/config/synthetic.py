"""How a synthetic subset draws its crystals (``source: synthetic``, its ``synthetic:`` section).

The generator itself is :mod:`xrdpipe.structures.synthetic` (and docs/synthetic.md); this
module holds only its settings, below the catalog, so that the structures package imports
the config and not the other way round.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)


@lru_cache(maxsize=1)
def scattering_elements() -> frozenset[str]:
    """Elements with X-ray atomic scattering parameters in pymatgen's ``XRDCalculator``.

    Read from ``pymatgen/analysis/diffraction/atomic_scattering_params.json``, the file
    ``XRDCalculator`` uses.
    """
    path = resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json"
    return frozenset(json.loads(path.read_text()))


DEFAULT_ELEMENTS = (
    "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te",
    "I", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Yb",
    "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi",
)  # fmt: skip
"""The 73 elements synthetic crystals are made of: the stable elements from Li to Bi that
are common in inorganic crystals, all with X-ray scattering factors in pymatgen. Left out:
H (it scatters X-rays weakly, and C with H is the pipeline's "organic"), the noble gases,
Tc, Pm, Tm and Lu (rare), Po and beyond (radioactive)."""


class SyntheticConfig(BaseModel):
    """How a synthetic subset draws its crystals (see the module docstring and docs/synthetic.md).

    The subset's ``seed`` and ``symmetry`` tolerances are the subset's own; the results do
    not depend on ``structures_per_task``.

    Attributes:
        n_structures: draws (structure indices ``0 .. n_structures - 1``); failed draws are
            quarantined, so the manifest holds a few fewer.
        balance_over: the requested space groups are uniform over the seven crystal
            systems, or over paper 000's seven lattice systems, and uniform within each.
        elements: the elements drawn from, uniformly (each must have X-ray scattering
            factors).
        element_count_weights: relative weights of 1, 2, ... elements per structure (at
            most 5 entries).
        min_atoms: lower end of the log-uniform target of atoms per cell (``cell_size``).
        max_atoms: upper end; no structure has more atoms in that cell.
        cell_size: the cell the target counts atoms in: ``conventional`` (the cell of the
            Wyckoff tables), or ``primitive``, the conventional cell over its lattice points
            (1 for P, 2 for A, B, C and I, 3 for R on hexagonal axes, 4 for F), so that the
            primitive cell, which sets how many reflections a pattern has, is drawn alike
            in every lattice system (docs/synthetic.md, "Cell size").
        volume_factor_range: the volume factor, drawn uniformly (cell volume over the sum
            of per-atom volumes).
        distance_factor: shortest allowed distance over the sum of covalent radii.
        keep_symmetry_changes: keep a draw whose spglib space group is not the one
            requested (with spglib's label), else quarantine it.
        axis_ratio: the largest ratio of two independent cell axes.
        lattice_attempts: random lattices (each with a new volume) tried per draw.
        placement_attempts: random points tried per orbit with free coordinates.
        structures_per_task: structure indices per Dask task.
        pseudo_symmetric_share: the share of structures (each drawn on its own stream) whose
            free coordinates are drawn near the eighths of the cell, each coordinate a
            multiple of 1/8 plus a normal offset of ``pseudo_symmetry_offset``: real
            crystals often hold atoms close to higher-symmetry sites (sub-cells,
            distorted parents), which gives a few strong lines and many weak ones; random
            coordinates rarely do (docs/synthetic.md, "Pseudo-symmetric crystals").
        pseudo_symmetry_offset: the standard deviation of that offset, fractional units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_structures: int = Field(default=2000, ge=1)
    balance_over: Literal["crystal_system", "lattice_system"] = "crystal_system"
    elements: tuple[str, ...] = DEFAULT_ELEMENTS
    element_count_weights: tuple[float, ...] = (0.10, 0.30, 0.30, 0.20, 0.10)
    min_atoms: int = Field(default=2, ge=1)
    max_atoms: int = Field(default=100, ge=1, le=500)
    cell_size: Literal["conventional", "primitive"] = "conventional"
    volume_factor_range: tuple[float, float] = (1.0, 1.3)
    distance_factor: float = Field(default=0.75, gt=0, le=1.5)
    keep_symmetry_changes: bool = True
    axis_ratio: float = Field(default=2.0, ge=1.0, le=5.0)
    lattice_attempts: int = Field(default=10, ge=1, le=1000)
    placement_attempts: int = Field(default=20, ge=1, le=1000)
    structures_per_task: int = Field(default=50, ge=1)
    pseudo_symmetric_share: float = Field(default=0.0, ge=0.0, le=1.0)
    pseudo_symmetry_offset: float = Field(default=0.02, gt=0.0, le=0.1)

    @field_validator("elements")
    @classmethod
    def _elements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"elements {list(value)} repeat an element")
        missing = [el for el in value if el not in scattering_elements()]
        if missing:
            raise ValueError(
                f"elements {missing} have no X-ray scattering factors in pymatgen "
                "(allowed: elements of pymatgen's atomic_scattering_params.json)"
            )
        return value

    @field_validator("element_count_weights")
    @classmethod
    def _weights(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not 1 <= len(value) <= 5 or any(w < 0 for w in value) or sum(value) <= 0:
            raise ValueError(
                f"element_count_weights {list(value)} must be 1 to 5 non-negative weights "
                "(of 1, 2, ... elements) with a positive sum"
            )
        return value

    @field_validator("volume_factor_range")
    @classmethod
    def _volume(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0.5 <= lo <= hi <= 3.0:
            raise ValueError(f"volume_factor_range {value!r} must satisfy 0.5 <= low <= high <= 3")
        return value

    @model_validator(mode="after")
    def _sizes(self) -> SyntheticConfig:
        if self.min_atoms > self.max_atoms:
            raise ValueError(f"min_atoms {self.min_atoms} exceeds max_atoms {self.max_atoms}")
        if len(self.element_count_weights) > len(self.elements):
            raise ValueError(
                f"element_count_weights allow {len(self.element_count_weights)} elements, "
                f"but elements lists only {len(self.elements)}"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_default_cell_size(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dumps without the options at their defaults (``cell_size``, pseudo-symmetry).

        ``cell_size`` is left out when ``conventional``, the pseudo-symmetry settings when
        no structure is pseudo-symmetric. That was the only behaviour before the options:
        the subsets, run fingerprints and chunk folders made before them read as they did.
        """
        data = handler(self)
        if isinstance(data, dict) and data.get("cell_size") == "conventional":
            data.pop("cell_size")
        if isinstance(data, dict) and not self.pseudo_symmetric_share:
            data.pop("pseudo_symmetric_share", None)
            data.pop("pseudo_symmetry_offset", None)
        return data


__all__ = ["DEFAULT_ELEMENTS", "SyntheticConfig", "scattering_elements"]
