"""Instrument calibration from a scan of a standard (LaB6 or Si) of certified cell.

The standard's lattice is held at its certified value, so every peak shift is the
instrument's and the mounting's: the fit (:func:`xrdpipe.refinement.refine`, one phase, all
widths refined) returns the zero shift, the standard's sample displacement, the Caglioti
``U, V, W`` and the Lorentzian ``X, Y`` (the instrument's own Lorentzian broadening plus the
standard's, small for SRM 660) and the axial-divergence asymmetry ``P_1, P_2``
(:func:`~xrdpipe.refinement.model.asymmetry_factor`).
:meth:`Calibration.profile_config` writes the zero and widths into the engine's
:class:`~xrdpipe.patterns.config.ProfileConfig` (fixed ranges ``(v, v)``: widen them for
training); the engine draws symmetric lines, so the asymmetry is not written there.
:meth:`Calibration.start` gives starting values, the asymmetry included, for refinements
of samples on the same instrument.

The LaB6 standard ships with the package (``data/LaB6.cif``: Pm-3m, a = 4.15689 angstrom,
SRM 660c; La at 0 0 0, B at x 1/2 1/2 with x = 0.1996).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from xrdpipe.patterns.config import InstrumentConfig, ProfileConfig, TCHWidthConfig
from xrdpipe.refinement.fit import refine
from xrdpipe.refinement.model import WIDTH_NAMES, LineSettings
from xrdpipe.refinement.parameters import DEFAULT_WIDTHS, RefinementOptions
from xrdpipe.refinement.phases import phase_from_structure
from xrdpipe.refinement.results import RefinementResult
from xrdpipe.structures.parse import parse_structure

LAB6_CERTIFIED_A = 4.15689
"""Angstrom: SRM 660c's certified lattice parameter (the shipped CIF's cell)."""


def lab6_structure() -> Structure:
    """The shipped LaB6 standard (module docstring)."""
    path = resources.files("xrdpipe.refinement") / "data" / "LaB6.cif"
    return parse_structure(Path(str(path)))


def with_cell(structure: Structure, cell: float | Sequence[float]) -> Structure:
    """The structure in another cell (same fractional coordinates).

    Args:
        structure: the standard.
        cell: a cubic ``a`` or ``(a, b, c, alpha, beta, gamma)``, angstrom and degrees.
    """
    values = [float(cell)] * 3 + [90.0] * 3 if np.isscalar(cell) else [float(v) for v in cell]  # type: ignore[arg-type]
    if len(values) != 6:
        raise ValueError(
            f"cell {cell!r} must be a cubic a or six values a, b, c, alpha, beta, gamma"
        )
    return Structure(
        Lattice.from_parameters(*values),
        structure.species_and_occu,
        structure.frac_coords,
        site_properties=structure.site_properties,
    )


@dataclass(frozen=True)
class Calibration:
    """The instrument from a standard (values and esds; degrees, mm, deg^2).

    Attributes:
        zero_shift_deg: zero shift.
        sample_displacement_mm: the standard's displacement (a mounting property).
        widths: ``U, V, W, X, Y`` by name.
        esd: the esd of each of the above by name (``zero_shift_deg``, ``U``, ...,
            ``asymmetry_p1``, ``asymmetry_p2``).
        refinement: the fit of the standard (Rwp, plots).
    """

    zero_shift_deg: float
    sample_displacement_mm: float
    widths: dict[str, float]
    esd: dict[str, float]
    refinement: RefinementResult
    asymmetry: tuple[float, float] = (0.0, 0.0)
    """The axial-divergence asymmetry ``(P_1, P_2)`` (not an engine field)."""

    def fields(self) -> dict[str, float]:
        """The calibrated values by engine field name (zero, displacement, U, V, W, X, Y)."""
        w = self.widths
        return {
            "zero_shift_deg": self.zero_shift_deg,
            "sample_displacement_mm": self.sample_displacement_mm,
            "caglioti_u_deg2": w["U"],
            "caglioti_v_deg2": w["V"],
            "caglioti_w_deg2": w["W"],
            "lorentz_x_deg": w["X"],
            "lorentz_y_deg": w["Y"],
        }

    def instrument_config(self, base: InstrumentConfig | None = None) -> InstrumentConfig:
        """``base`` (default empty) with the displacement and TCH widths fixed at these."""
        base = base or InstrumentConfig()
        f = self.fields()
        widths = TCHWidthConfig(
            **{
                name: (max(f[name], low), max(f[name], low))
                for name, low in (
                    ("caglioti_u_deg2", 0.0),
                    ("caglioti_v_deg2", -10.0),
                    ("caglioti_w_deg2", 1e-8),
                    ("lorentz_x_deg", 0.0),
                    ("lorentz_y_deg", 0.0),
                )
            }
        )
        displacement = (f["sample_displacement_mm"],) * 2
        return base.model_copy(update={"widths": widths, "sample_displacement_mm": displacement})

    def profile_config(self, base: ProfileConfig | None = None) -> ProfileConfig:
        """``base`` (default :class:`ProfileConfig`) with the zero shift and instrument set."""
        base = base or ProfileConfig()
        return base.model_copy(
            update={
                "zero_shift_deg": (self.zero_shift_deg, self.zero_shift_deg),
                "instrument": self.instrument_config(base.instrument),
            }
        )

    def start(self) -> dict[str, object]:
        """Keyword starting values for :func:`~xrdpipe.refinement.refine` of a sample."""
        return {
            "zero_shift_deg": self.zero_shift_deg,
            "sample_displacement_mm": 0.0,
            "widths": tuple(self.widths[n] for n in WIDTH_NAMES),
            "asymmetry": self.asymmetry,
        }


def calibrate(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    standard: Structure | None = None,
    settings: LineSettings | None = None,
    *,
    certified_cell: float | Sequence[float] | None = None,
    background_order: int = 4,
    name: str = "standard",
) -> Calibration:
    """Fits a scan of a standard with its cell held and returns the instrument.

    Args:
        two_theta: degrees.
        intensity: counts.
        standard: the standard's structure (default the shipped LaB6).
        settings: lines and fixed geometry (radius, monochromator, slit).
        certified_cell: the certified cell (a cubic ``a`` or six values); default the
            structure's own (the shipped LaB6: SRM 660c).
        background_order: Chebyshev order.
        name: the standard's label in the result.

    Returns:
        The :class:`Calibration`.
    """
    structure = lab6_structure() if standard is None else standard
    if certified_cell is not None:
        structure = with_cell(structure, certified_cell)
    lo, hi = float(np.min(two_theta)), float(np.max(two_theta))
    phase = phase_from_structure(structure, name, (lo, hi))
    options = RefinementOptions(
        widths="shared",
        background_order=background_order,
        fixed_lattice=(name,),
        refine_asymmetry=True,
    )
    result = refine(two_theta, intensity, [phase], settings, options, widths=DEFAULT_WIDTHS)
    fitted = result.phases[0]
    esd = {
        "zero_shift_deg": result.zero_shift_esd,
        "sample_displacement_mm": result.sample_displacement_esd,
    }
    esd.update(fitted.widths_esd)
    esd.update(zip(("asymmetry_p1", "asymmetry_p2"), result.asymmetry_esd, strict=True))
    return Calibration(
        zero_shift_deg=result.zero_shift_deg,
        sample_displacement_mm=result.sample_displacement_mm,
        widths=dict(fitted.widths),
        esd=esd,
        refinement=result,
        asymmetry=result.asymmetry,
    )
