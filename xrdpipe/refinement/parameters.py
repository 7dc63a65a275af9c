"""The refinement's nonlinear parameters: one vector, its names, bounds and what each moves.

Layout: ``zero_shift_deg``, ``sample_displacement_mm``, the asymmetry ``asymmetry_p1``,
``asymmetry_p2`` (:func:`~xrdpipe.refinement.model.asymmetry_factor`); then the width sets
(five values ``U, V, W, X, Y`` each, shared between phases as
:class:`RefinementOptions.widths` says); then each phase's free lattice values and, when
refined, its March-Dollase ``r`` and its overall ``B`` shift. The linear parameters (scales,
Chebyshev coefficients) are not here: the fit solves them at each step (variable
projection).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from xrdpipe.refinement.model import WIDTH_NAMES, PhaseParameters
from xrdpipe.refinement.phases import RefinementPhase

WidthSharing = Literal["instrument", "shared", "per_phase"]
"""``instrument``: one Caglioti U, V, W for all phases (the instrument), X and Y per phase
(size and strain; the default, as the engine draws them); ``shared``: one set of all five;
``per_phase``: all five per phase."""

DEFAULT_WIDTHS = (0.004, -0.002, 0.003, 0.05, 0.02)
"""Starting ``U, V, W`` (deg^2) and ``X, Y`` (degrees): the middle of the engine's ranges,
a FWHM of ~0.1 degrees at 40 degrees two-theta."""

WIDTH_BOUNDS = ((0.0, 1.0), (-1.0, 1.0), (1e-6, 1.0), (0.0, 2.0), (0.0, 2.0))
"""Bounds of ``U, V, W, X, Y``: non-negative U, W, X, Y; a FWHM up to a few degrees. The
upper bound of a phase's own X and Y is :attr:`RefinementOptions.max_sample_width_deg`."""

ZERO_BOUND_DEG = 1.0
"""|zero shift| bound, degrees."""

DISPLACEMENT_BOUND_MM = 1.0
"""|sample displacement| bound, mm."""

LATTICE_BOUND = 0.03
"""Relative bound of a cell edge around its start (3 %); angles +- 3 degrees."""

ASYMMETRY_BOUND = 0.25
"""``|P_1|, |P_2|`` bound: at 2theta = 20 degrees ``|a| <= 0.69``, a tail of up to ~0.6 of
the line's height at half a FWHM below it; beyond, the Hermite series of the correction is
no longer a small correction (``A(z)`` can turn negative)."""

RATIO_BOUNDS = (0.5, 1.5)
"""March-Dollase r bounds: the range of real powders (platy r < 1, needles r > 1); beyond
it the ratio of a minor phase takes misfit (seen 0.4, 1.76 and 2.24 under (0.3, 3))."""

B_SHIFT_BOUNDS = (-1.0, 3.0)
"""Bounds of a phase's overall ``B`` shift, angstrom^2: room-temperature B of inorganic
solids are ~0.2-2; a negative shift stands for surface roughness, which lowers the low-angle
intensities of a Bragg-Brentano scan as a negative B would."""


@dataclass(frozen=True)
class RefinementOptions:
    """What is refined and how (every field has a working default).

    Attributes:
        widths: how TCH widths are shared (:data:`WidthSharing`).
        background_order: Chebyshev order of the background, 0..6.
        refine_zero: refine the zero shift (else hold its start).
        refine_displacement: refine the sample displacement.
        refine_asymmetry: refine the axial-divergence asymmetry ``P_1, P_2`` (an
            instrument property; :func:`~xrdpipe.refinement.model.asymmetry_factor`) in
            the last stage; else hold its start (0: symmetric lines). Off by default: on
            the independent benchmark it changed no answer and cost +20-45 % per scan
            (docs/refinement.md); :func:`~xrdpipe.refinement.calibration.calibrate`
            refines it.
        refine_lattice: refine each phase's free lattice parameters.
        refine_widths: refine the widths; ``instrument_widths_fixed`` holds U, V, W only
            (e.g. from a calibration) while X, Y still refine.
        instrument_widths_fixed: hold the Caglioti U, V, W at their start.
        fixed_lattice: phase names whose lattice is held at its start (an internal
            standard of certified cell, or the standard of a calibration).
        march_dollase: per phase name, the preferred-orientation axis ``(h, k, l)`` whose
            ratio r is refined; phases not named stay random powders.
        zero_search_deg: half-width of the coarse search over the zero shift before the
            least squares (0: none).
        max_nfev: least-squares function evaluations of the last stage.
        minor_fraction: phases below this weight fraction after the first stage keep their
            own lattice and widths at their start (their scales are refined).
        particle_radius_um: Brindley particle radius, micrometre (None: no correction).
        select_phases: after the fit, drop the phases below
            ``max(drop_fraction, drop_esd * esd)`` weight fraction and refit the rest, until
            none falls below (the dropped phases report zero; ``RefinementResult.dropped``).
        drop_fraction: the least weight fraction kept (0.01: 1 wt%).
        drop_esd: the least weight fraction kept, in its esds.
        orientation_search: for each phase of the final set above
            ``orientation_min_fraction`` and without a given axis, try March-Dollase along
            a few low-index axes and keep the best if it improves the fit significantly
            (``fit.orientation_axes``, scaled BIC). Off by default: ~25 screening fits per
            scan with four phases (docs/refinement.md).
        orientation_min_fraction: the least weight fraction searched (0.05).
        refine_b_shift: refine each phase's overall ``B`` shift ``dB`` (angstrom^2, added
            to every site's B: each line's intensity times ``exp(-dB / (2 d^2))``) in a last
            refit after the phase and axis searches (``fit._b_shift_refit``), phases below
            ``b_shift_min_fraction`` held at 0. A CIF's B belong to
            another temperature or are missing (the phase set then assumes
            ``overall_b``), and surface roughness acts as a negative B; a B off by 0.5
            scales a line at d = 1 angstrom by 0.78, and the scale (so the weight fraction)
            absorbs it. Off by default (on the independent benchmark it changed no phase
            set and raised the MAE by 0.1 wt%; docs/refinement.md, "B shift").
        b_shift_min_fraction: the least weight fraction whose B shift is refined (0.1: a
            minor phase's few lines cannot tell a B from its scale).
        max_sample_width_deg: upper bound of a phase's size and strain widths X and Y,
            degrees (0.5: Scherrer crystallites of ~16 nm at Cu K-alpha, or a microstrain
            of ~2e-3). Without it a phase the scan does not hold widens to a few degrees
            and models the background (seen on the benchmark: kyanite at X = Y = 2 took
            half of a brucite scan). Raise it for nanocrystalline samples.
    """

    widths: WidthSharing = "instrument"
    background_order: int = 4
    refine_zero: bool = True
    refine_displacement: bool = True
    refine_asymmetry: bool = False
    refine_lattice: bool = True
    refine_widths: bool = True
    instrument_widths_fixed: bool = False
    fixed_lattice: tuple[str, ...] = ()
    march_dollase: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    zero_search_deg: float = 0.15
    max_nfev: int = 60
    minor_fraction: float = 0.03
    particle_radius_um: float | None = None
    select_phases: bool = True
    drop_fraction: float = 0.01
    drop_esd: float = 2.0
    orientation_search: bool = False
    orientation_min_fraction: float = 0.05
    max_sample_width_deg: float = 0.5
    refine_b_shift: bool = False
    b_shift_min_fraction: float = 0.1


@dataclass
class ParameterLayout:
    """The nonlinear parameter vector (see the module docstring).

    Attributes:
        names: one per entry (``zero_shift_deg``, ``width0.U``, ``<phase>.a``, ...).
        values: the current values.
        lower, upper: bounds.
        kinds: ``global``, ``asymmetry``, ``width``, ``lattice``, ``ratio`` or
            ``thermal``.
        free: which entries the fit may move.
        phase_widths: per phase, the 5 indices of its U, V, W, X, Y.
        phase_lattice: per phase, the indices of its free lattice values.
        phase_ratio: per phase, the index of its March-Dollase r, or None.
        phase_b_shift: per phase, the index of its overall B shift, or None.
    """

    names: list[str]
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    kinds: list[str]
    free: np.ndarray
    phase_widths: list[np.ndarray]
    phase_lattice: list[np.ndarray]
    phase_ratio: list[int | None]
    phase_b_shift: list[int | None]

    ZERO = 0
    DISPLACEMENT = 1
    ASYMMETRY = (2, 3)

    def phase_parameters(self, theta: np.ndarray, p: int) -> PhaseParameters:
        """Phase ``p``'s lattice, widths, ratio and B shift at the vector ``theta``."""
        ratio, b_shift = self.phase_ratio[p], self.own_b_shift(p)
        return PhaseParameters(
            lattice=theta[self.phase_lattice[p]],
            widths=theta[self.phase_widths[p]],
            march_dollase_ratio=1.0 if ratio is None else float(theta[ratio]),
            b_shift=0.0 if b_shift is None else float(theta[b_shift]),
        )

    def own_b_shift(self, p: int) -> int | None:
        """The index of phase ``p``'s overall B shift, or None (not refined)."""
        return self.phase_b_shift[p]

    def asymmetry(self, theta: np.ndarray) -> tuple[float, float]:
        """``(P_1, P_2)`` at the vector ``theta``."""
        return float(theta[self.ASYMMETRY[0]]), float(theta[self.ASYMMETRY[1]])

    @property
    def n_counted(self) -> int:
        """Entries counted in the search's degrees of freedom: all, the asymmetry if free.

        (Held cells and widths count, as they always have; a held asymmetry does not, so a
        fit with it held at 0 is the fit without it.)
        """
        held = sum(not self.free[i] for i in self.ASYMMETRY)
        return len(self.names) - held

    def dependencies(self, p: int) -> np.ndarray:
        """Indices of every entry that moves phase ``p``'s lines."""
        extra = [i for i in (self.phase_ratio[p], self.own_b_shift(p)) if i is not None]
        return np.concatenate(
            [
                [self.ZERO, self.DISPLACEMENT, *self.ASYMMETRY],
                self.phase_widths[p],
                self.phase_lattice[p],
                extra,
            ]
        ).astype(np.int64)


def build_layout(
    phases: Sequence[RefinementPhase],
    options: RefinementOptions,
    *,
    zero_shift_deg: float = 0.0,
    sample_displacement_mm: float = 0.0,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    asymmetry: Sequence[float] = (0.0, 0.0),
) -> ParameterLayout:
    """The parameter vector of a phase set at its starting values, with bounds and freedom.

    Args:
        phases: the candidate phases.
        options: what is refined and how widths are shared.
        zero_shift_deg: start of the zero shift.
        sample_displacement_mm: start of the displacement.
        widths: start of ``U, V, W, X, Y`` (every width set).
        asymmetry: start of ``P_1, P_2``.
    """
    if len(asymmetry) != 2:
        raise ValueError(f"asymmetry {tuple(asymmetry)!r} must be two values (P_1, P_2)")
    names = ["zero_shift_deg", "sample_displacement_mm", "asymmetry_p1", "asymmetry_p2"]
    values = [
        zero_shift_deg,
        sample_displacement_mm,
        *np.clip(asymmetry, -ASYMMETRY_BOUND, ASYMMETRY_BOUND),
    ]
    lower, upper = (
        [-ZERO_BOUND_DEG, -DISPLACEMENT_BOUND_MM, -ASYMMETRY_BOUND, -ASYMMETRY_BOUND],
        [ZERO_BOUND_DEG, DISPLACEMENT_BOUND_MM, ASYMMETRY_BOUND, ASYMMETRY_BOUND],
    )
    kinds = ["global", "global", "asymmetry", "asymmetry"]
    free = [options.refine_zero, options.refine_displacement, *[options.refine_asymmetry] * 2]

    def add(name: str, value: float, bounds: tuple[float, float], kind: str, is_free: bool) -> int:
        lo, hi = bounds
        names.append(name)
        values.append(float(np.clip(value, lo, hi)))
        lower.append(lo)
        upper.append(hi)
        kinds.append(kind)
        free.append(is_free)
        return len(names) - 1

    def width_set(label: str, which: Sequence[int]) -> dict[int, int]:
        out = {}
        for i in which:
            is_free = options.refine_widths and not (options.instrument_widths_fixed and i < 3)
            bounds = WIDTH_BOUNDS[i] if i < 3 else (0.0, options.max_sample_width_deg)
            out[i] = add(f"{label}.{WIDTH_NAMES[i]}", widths[i], bounds, "width", is_free)
        return out

    shared: dict[int, int] = {}
    if options.widths == "shared":
        shared = width_set("widths", range(5))
    elif options.widths == "instrument":
        shared = width_set("instrument", range(3))
    elif options.widths != "per_phase":
        raise ValueError(f"widths {options.widths!r} is not one of instrument, shared, per_phase")
    offered = {ph.name for ph in phases}
    for field_name in ("march_dollase", "fixed_lattice"):
        unknown = set(getattr(options, field_name)) - offered
        if unknown:
            raise ValueError(
                f"{field_name} names {sorted(unknown)}, which are not offered phases "
                f"{sorted(offered)}"
            )

    phase_widths, phase_lattice, phase_ratio, phase_b_shift = [], [], [], []
    for phase in phases:
        own = width_set(phase.name, [i for i in range(5) if i not in shared])
        phase_widths.append(np.array([shared.get(i, own.get(i)) for i in range(5)]))
        indices = []
        for name, start in zip(phase.lattice.names, phase.lattice.start, strict=True):
            is_angle = name in ("alpha", "beta", "gamma")
            bounds = (
                (start - 3.0, start + 3.0)
                if is_angle
                else (start * (1 - LATTICE_BOUND), start * (1 + LATTICE_BOUND))
            )
            is_free = options.refine_lattice and phase.name not in options.fixed_lattice
            indices.append(add(f"{phase.name}.{name}", start, bounds, "lattice", is_free))
        phase_lattice.append(np.array(indices, dtype=np.int64))
        if phase.name in options.march_dollase:
            phase_ratio.append(
                add(f"{phase.name}.march_dollase_r", 1.0, RATIO_BOUNDS, "ratio", True)
            )
        else:
            phase_ratio.append(None)
        phase_b_shift.append(
            add(f"{phase.name}.b_shift", 0.0, B_SHIFT_BOUNDS, "thermal", True)
            if options.refine_b_shift
            else None
        )
    return ParameterLayout(
        names=names,
        values=np.array(values, dtype=np.float64),
        lower=np.array(lower, dtype=np.float64),
        upper=np.array(upper, dtype=np.float64),
        kinds=kinds,
        free=np.array(free, dtype=bool),
        phase_widths=phase_widths,
        phase_lattice=phase_lattice,
        phase_ratio=phase_ratio,
        phase_b_shift=phase_b_shift,
    )
