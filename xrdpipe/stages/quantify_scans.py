"""``xrdpipe quantify`` per scan: the ensemble's weight fractions, the refinement, the flags.

For each measured scan (:func:`quantify_patterns`):

1. **CNN**: the scan is put on the model's grid by :func:`xrdpipe.readers.prepare_pattern`
   exactly as ``xrdpipe predict`` puts it for a phase-fraction model (background kept:
   the network was trained with backgrounds); each member's weight fractions give the
   mean (``wt_percent``) and the spread (population std over members, ``sigma``).
2. **Refinement** (``refine=True``): :func:`xrdpipe.refinement.polish` on the scan's counts
   with every phase of the set offered: the CNN's present phases (at least 1 wt% and their
   detection limit) are fitted first, then the refinement's search drops those the scan does
   not support and adds those the CNN missed (``docs/refinement.md``), and each phase above
   5 wt% gets a March-Dollase axis where one improves the fit significantly; with the model's
   instrument (:meth:`LineSettings.from_profile`; the scan's own wavelengths where it
   gives them).
   ``refined_sigma = sqrt(spread^2 + esd^2)``; the flag ``disagree`` when
   ``|refined - CNN| > 2 refined_sigma``; the flags ``added by the refinement`` and
   ``dropped by the refinement`` where the two answers' phase sets differ; a phase not in
   the refinement's final set reports 0 with the CNN's spread. Unexplained residual peaks
   (:func:`xrdpipe.refinement.residuals.residual_peaks`) are flags on every row of the scan.
3. **Present**: refined, a phase of the refinement's final set (it passed the search's
   significance test and ``max(1 wt%, 2 esd)``) above 1 wt%; the CNN's answer alone, above
   ``max(1 wt%, detection limit)``.
4. **Units**: "relative crystalline wt%" (the phases sum to 100); with an internal
   standard (a phase of the set, weighed in at ``standard_wt`` wt% of the whole sample),
   every value is rescaled by ``standard_wt / w_std`` (:func:`internal_standard_scale`)
   and the remainder ``100 - standard_wt / w_std`` is the amorphous/unidentified share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrdpipe.readers import MeasuredPattern, PreparedPattern, prepare_pattern
from xrdpipe.stages.quantify_model import QuantifyModel

PRESENT_FLOOR = 0.01
"""A phase is present above this weight fraction (the CNN's answer alone: above
max(this, its detection limit))."""
POLISH_THRESHOLD = 0.01
"""CNN weight fractions from this up, and from the phase's detection limit up, are the
refinement's start set: the CNN's present phases (:meth:`ScanQuantity.present`). A phase the
CNN gives under its detection limit is no evidence; started anyway, such a phase absorbed
misfit and grew to 8-23 wt% in 4 benchmark scans (`benchmarks/results/quantify.json` of
38a67c5), while the search adds a phase the scan holds."""
DISAGREE_SIGMAS = 2.0
"""CNN and refinement disagree when they differ by more than this many refined sigmas."""
RELATIVE_LABEL = "relative crystalline wt%"
AMORPHOUS = "amorphous/unidentified"
"""The extra row of an internal-standard answer."""
COLUMNS = (
    "scan",
    "phase",
    "wt_percent",
    "sigma",
    "refined_wt_percent",
    "refined_sigma",
    "rwp",
    "present",
    "flags",
)
"""The columns of ``quantify.csv`` and the keys of each row."""


@dataclass(frozen=True)
class InternalStandard:
    """A weighed-in standard: ``phase`` (a phase name of the set) at ``weight_percent``."""

    phase: str
    weight_percent: float

    def __post_init__(self) -> None:
        if not 0 < self.weight_percent < 100:
            raise ValueError(
                f"standard weight percent {self.weight_percent!r} must be between 0 and 100"
            )

    def label(self) -> str:
        """The unit of the rescaled values."""
        return f"wt% of the sample (internal standard {self.phase} at {self.weight_percent:g} wt%)"


def internal_standard_scale(
    fraction: float, sigma: float, standard_weight_percent: float
) -> tuple[float, float, float]:
    """``(factor, amorphous %, its sigma)`` from the standard's relative fraction.

    ``factor = s / w_s`` turns relative weight fractions (0-1) into wt% of the sample; the
    crystalline phases then sum to ``factor``, so the amorphous/unidentified share is
    ``100 - s / w_s`` with ``sigma = s sigma_s / w_s^2``.
    """
    if fraction <= 0:
        raise ValueError(f"the internal standard's fraction {fraction!r} must be positive")
    factor = standard_weight_percent / fraction
    return factor, 100.0 - factor, standard_weight_percent * sigma / fraction**2


@dataclass
class ScanQuantity:
    """One scan's answer.

    Attributes:
        scan: the file (or source) name.
        names: phase names in output order.
        weight_fraction: CNN ensemble mean, 0-1 (relative crystalline).
        spread: its std over members.
        refined: refined weight fractions (0-1, relative), or None.
        refined_esd: the refinement's esds, or None.
        rwp: R_wp of the refinement, or None.
        detection_limits: per phase, 0-1 (NaN: none).
        phase_flags: per phase name, flags.
        scan_flags: flags of the whole scan (residual peaks, a failed refinement).
        prepared: the scan on the model's grid (``grid``, degrees at the model's wavelength).
        refinement: the :class:`~xrdpipe.refinement.PolishResult`, or None.
        standard: the internal standard, or None.
        seconds: wall time of this scan.
        notes: the reader's and the preparation's notes.
    """

    scan: str
    names: list[str]
    weight_fraction: np.ndarray
    spread: np.ndarray
    refined: np.ndarray | None
    refined_esd: np.ndarray | None
    rwp: float | None
    detection_limits: np.ndarray
    phase_flags: dict[str, list[str]]
    scan_flags: list[str]
    prepared: PreparedPattern
    pattern: MeasuredPattern
    refinement: Any = None
    standard: InternalStandard | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    grid: np.ndarray | None = field(default=None, repr=False)

    @property
    def unit(self) -> str:
        """What the percentages are."""
        return RELATIVE_LABEL if self.standard is None else self.standard.label()

    def refined_sigma(self) -> np.ndarray | None:
        """``sqrt(spread^2 + esd^2)`` per phase (fractions), or None without refinement."""
        if self.refined_esd is None:
            return None
        return np.sqrt(self.spread**2 + np.nan_to_num(self.refined_esd) ** 2)

    def present(self) -> np.ndarray:
        """Present by the module docstring's rule (refined, or the CNN's alone)."""
        if self.refined is not None:
            return self.refined > PRESENT_FLOOR
        limit = np.fmax(np.nan_to_num(self.detection_limits, nan=0.0), PRESENT_FLOOR)
        return self.weight_fraction > limit

    def _scaled(
        self, fraction: np.ndarray, sigma: np.ndarray, flags: list[str]
    ) -> tuple[float, tuple[float, float] | None]:
        """``(factor, (amorphous %, sigma) or None)`` of one answer (CNN or refined)."""
        if self.standard is None:
            return 100.0, None
        i = self.names.index(self.standard.phase)
        try:
            factor, share, share_sigma = internal_standard_scale(
                float(fraction[i]), float(sigma[i]), self.standard.weight_percent
            )
        except ValueError as exc:
            flags.append(f"internal standard not usable: {exc}")
            return math.nan, None
        return factor, (share, share_sigma)

    def rows(self) -> list[dict[str, Any]]:
        """One row per phase (and the amorphous share with a standard): :data:`COLUMNS`.

        With an internal standard the CNN's columns are rescaled by the CNN's reading of
        the standard and the refined columns by the refinement's.
        """
        scan_flags = list(self.scan_flags)
        sigma_r = self.refined_sigma()
        factor, amorphous = self._scaled(self.weight_fraction, self.spread, scan_flags)
        refined_factor, refined_amorphous = (
            (math.nan, None)
            if self.refined is None or sigma_r is None
            else self._scaled(self.refined, sigma_r, scan_flags)
        )
        present = self.present()
        rows = []
        for i, name in enumerate(self.names):
            rows.append(
                {
                    "scan": self.scan,
                    "phase": name,
                    "wt_percent": factor * float(self.weight_fraction[i]),
                    "sigma": factor * float(self.spread[i]),
                    "refined_wt_percent": None
                    if self.refined is None
                    else refined_factor * float(self.refined[i]),
                    "refined_sigma": None
                    if sigma_r is None
                    else refined_factor * float(sigma_r[i]),
                    "rwp": self.rwp,
                    "present": bool(present[i]),
                    "flags": [*self.phase_flags.get(name, []), *scan_flags],
                }
            )
        if self.standard is not None:
            reported = refined_amorphous if self.refined is not None else amorphous
            rows.append(
                {
                    "scan": self.scan,
                    "phase": AMORPHOUS,
                    "wt_percent": None if amorphous is None else amorphous[0],
                    "sigma": None if amorphous is None else amorphous[1],
                    "refined_wt_percent": None
                    if refined_amorphous is None
                    else refined_amorphous[0],
                    "refined_sigma": None if refined_amorphous is None else refined_amorphous[1],
                    "rwp": self.rwp,
                    "present": reported is not None and reported[0] > 100 * PRESENT_FLOOR,
                    "flags": ["negative share: the standard reads high"]
                    if reported is not None and reported[0] < 0
                    else [],
                }
            )
        return rows


def line_settings(model: QuantifyModel, pattern: MeasuredPattern) -> Any:
    """The model's instrument lines, with the scan's own wavelengths where it gives them."""
    from dataclasses import replace

    from xrdpipe.refinement import LineSettings

    settings = LineSettings.from_profile(model.subset.profile)
    if pattern.ka1 is not None:
        settings = replace(
            settings,
            ka1=pattern.ka1,
            ka2=pattern.ka2,
            ka2_ratio=pattern.ka2_ratio if pattern.ka2_ratio is not None else settings.ka2_ratio,
        )
    return settings


def refinement_options(simulation: Any) -> dict[str, Any]:
    """The scattering options of a phase set's refinement: those its store was simulated with.

    The phases' ``|F|^2`` (:func:`~xrdpipe.refinement.phase_from_structure`) then use the same
    ``f0`` table, ``f'``, ``f''`` and ``B`` as the stored peak lists the CNN was trained on
    (``stages/simulate_block.simulate_material``).

    Args:
        simulation: the phase set's :class:`~xrdpipe.config.simulation.SimulationConfig`.

    Returns:
        ``scattering``, ``displacement`` and ``overall_b`` for ``phase_from_structure``.
    """
    return {
        "scattering": simulation.scattering,
        "displacement": simulation.displacement,
        "overall_b": simulation.overall_b,
    }


class RefinementPhases:
    """Each phase's :class:`~xrdpipe.refinement.RefinementPhase`, built once per scan range."""

    def __init__(self, structures: Mapping[str, Any], model: QuantifyModel) -> None:
        missing = set(model.names) - set(structures)
        if missing:
            raise ValueError(f"no structure for phases {sorted(missing)} of {model.name}")
        self.structures = structures
        self.names = model.names
        simulation = model.subset.simulation
        self.wavelength = simulation.wavelength
        self.options = refinement_options(simulation)
        self._cache: dict[tuple[float, float], list[Any]] = {}

    def for_range(self, two_theta_range: tuple[float, float]) -> list[Any]:
        """The phases listed for a scan's range (cached by range)."""
        from xrdpipe.refinement import phase_from_structure

        key = (round(two_theta_range[0], 3), round(two_theta_range[1], 3))
        if key not in self._cache:
            self._cache[key] = [
                phase_from_structure(
                    self.structures[name], name, key, self.wavelength, **self.options
                )
                for name in self.names
            ]
        return self._cache[key]


def _refine(
    quantity: ScanQuantity,
    model: QuantifyModel,
    phases: RefinementPhases,
) -> None:
    from xrdpipe.refinement import RefinementOptions, polish
    from xrdpipe.refinement.residuals import residual_peaks

    pattern = quantity.pattern
    fractions = dict(zip(model.names, quantity.weight_fraction.tolist(), strict=True))
    listed = phases.for_range((float(pattern.two_theta[0]), float(pattern.two_theta[-1])))
    try:
        result = polish(
            pattern.two_theta,
            pattern.intensity,
            listed,
            fractions,
            line_settings(model, pattern),
            RefinementOptions(orientation_search=True),
            threshold=POLISH_THRESHOLD,
            floors={n: v for n, v in model.detection_limits.items() if math.isfinite(v)},
        )
    except ValueError as exc:
        quantity.scan_flags.append(f"refinement failed: {exc}")
        return
    fit = result.refinement
    refined = np.zeros(len(model.names))
    esd = np.zeros(len(model.names))
    for i, name in enumerate(model.names):
        cnn = 100 * quantity.weight_fraction[i]
        started = name in result.started
        if name in result.kept:
            phase = fit.phase(name)
            refined[i], esd[i] = phase.weight_fraction, phase.weight_fraction_esd
            if not started:
                quantity.phase_flags.setdefault(name, []).append(
                    f"added by the refinement (CNN {cnn:.1f} wt%)"
                )
        elif started:
            quantity.phase_flags.setdefault(name, []).append(
                f"dropped by the refinement (CNN {cnn:.1f} wt%)"
            )
    quantity.refined, quantity.refined_esd = refined, esd
    quantity.rwp = float(fit.rwp)
    quantity.refinement = result
    sigma = quantity.refined_sigma()
    assert sigma is not None
    for i, name in enumerate(model.names):
        gap = abs(refined[i] - quantity.weight_fraction[i])
        if name in result.kept and gap > DISAGREE_SIGMAS * sigma[i]:
            quantity.phase_flags.setdefault(name, []).append(
                f"disagree: refined {100 * refined[i]:.1f} vs CNN "
                f"{100 * quantity.weight_fraction[i]:.1f} wt% (> {DISAGREE_SIGMAS:g} sigma)"
            )
    try:
        peaks = residual_peaks(fit)
    except ValueError as exc:
        quantity.scan_flags.append(f"residual test skipped: {exc}")
        return
    for peak in peaks:
        quantity.scan_flags.append(
            f"residual peak at 2theta {peak.two_theta:.2f} deg (height {peak.height:.0f} "
            f"counts, {100 * peak.relative_height:.1f} % of the strongest peak, "
            f"{peak.significance:.0f} sigma)"
        )


def quantify_patterns(
    patterns: Sequence[MeasuredPattern],
    model: QuantifyModel,
    *,
    refine: bool = False,
    structures: Mapping[str, Any] | None = None,
    standard: InternalStandard | None = None,
    allow_partial: bool = False,
) -> list[ScanQuantity]:
    """Weight fractions of measured scans with error bars (module docstring).

    Args:
        patterns: scans as read (:func:`xrdpipe.readers.read_pattern`), in counts.
        model: the loaded ensemble (:func:`~xrdpipe.stages.quantify_model.ensure_model`).
        refine: polish the CNN's answer with the whole-pattern refinement.
        structures: each phase's pymatgen structure by phase name (needed to refine).
        standard: an internal standard (a phase of the set and its weighed wt%).
        allow_partial: accept scans covering part of the model's range.

    Returns:
        One :class:`ScanQuantity` per scan, in order.

    Raises:
        ValueError: ``refine`` without ``structures``, or a standard outside the phase set.
        MeasuredPatternError: a scan does not cover the model's range.
    """
    if standard is not None and standard.phase not in model.names:
        raise ValueError(
            f"internal standard {standard.phase!r} is not a phase of {model.name}: {model.names}"
        )
    if refine and structures is None:
        raise ValueError("refine=True needs each phase's structure (structures=...)")
    phases = RefinementPhases(structures, model) if refine and structures is not None else None
    limits = np.array([model.detection_limits.get(n, math.nan) for n in model.names])
    out = []
    for pattern in patterns:
        start = time.perf_counter()
        prepared = prepare_pattern(
            pattern, model.grid, background=False, allow_partial=allow_partial
        )
        mean, spread = model.predict(prepared.x[None])
        quantity = ScanQuantity(
            scan=str(pattern.source),
            names=list(model.names),
            weight_fraction=mean[0].astype(np.float64),
            spread=spread[0].astype(np.float64),
            refined=None,
            refined_esd=None,
            rwp=None,
            detection_limits=limits,
            phase_flags={},
            scan_flags=[],
            prepared=prepared,
            pattern=pattern,
            standard=standard,
            notes=[*pattern.notes, *prepared.notes],
            grid=model.grid.two_theta,
        )
        if phases is not None:
            _refine(quantity, model, phases)
        quantity.seconds = time.perf_counter() - start
        out.append(quantity)
    return out
