"""Refinement from a given answer (``quantify --refine`` after a CNN): :func:`polish`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xrdpipe.refinement.fit import refine
from xrdpipe.refinement.model import LineSettings
from xrdpipe.refinement.parameters import RefinementOptions
from xrdpipe.refinement.phases import RefinementPhase
from xrdpipe.refinement.results import RefinementResult


@dataclass(frozen=True)
class PolishResult:
    """A given answer (e.g. a CNN's) and the refinement that started from it.

    Attributes:
        given: the given weight fractions by phase (every phase offered).
        kept: the phases of the final refinement (the search may have dropped some of
            the given ones and added others).
        refinement: the refinement of the kept phases.
        difference: refined minus given weight fraction, by phase (dropped phases: minus
            the given value).
        started: the phases fitted first (given fraction at or above the threshold).
    """

    given: dict[str, float]
    kept: tuple[str, ...]
    refinement: RefinementResult
    difference: dict[str, float]
    started: tuple[str, ...] = ()


def polish(
    two_theta: np.ndarray,
    intensity: np.ndarray,
    phases: Sequence[RefinementPhase],
    fractions: Mapping[str, float],
    settings: LineSettings | None = None,
    options: RefinementOptions | None = None,
    *,
    threshold: float = 0.01,
    floors: Mapping[str, float] | None = None,
    **start: object,
) -> PolishResult:
    """Refines from a given phase set and fractions (``--refine`` after a CNN).

    The phases whose given fraction reaches ``threshold`` (and the phase's own floor, where
    ``floors`` gives one: e.g. the CNN's detection limit) are fitted first; with
    ``options.select_phases`` (the default) the search of :func:`refine` then drops those
    the scan does not support and adds offered phases the answer missed (a CNN's phase
    under 1 wt% is often a present minor phase). The scales are solved, not started from
    the fractions: variable projection needs no linear starting values.

    Args:
        two_theta: degrees.
        intensity: counts.
        phases: every candidate phase (names must match ``fractions``' keys).
        fractions: the given weight fractions by phase name (missing names count as 0).
        settings: lines and geometry.
        options: what is refined.
        threshold: the least given fraction fitted first (0.01: 1 wt%).
        floors: per phase name, a least given fraction fitted first above ``threshold``
            (a fraction under the giver's detection limit is no evidence: such a phase
            enters only if the search's own test adds it).
        **start: starting values passed to :func:`refine` (``zero_shift_deg``, ...).

    Returns:
        The :class:`PolishResult`.

    Raises:
        ValueError: ``fractions`` names an unknown phase, or no phase reaches the threshold
            while the selection is off.
    """
    by_name = {ph.name: ph for ph in phases}
    unknown = set(fractions) - set(by_name)
    if unknown:
        raise ValueError(
            f"fractions name unknown phases {sorted(unknown)}; known: {sorted(by_name)}"
        )
    options = options or RefinementOptions()
    given = {name: float(fractions.get(name, 0.0)) for name in by_name}
    floors = floors or {}
    first = tuple(name for name in by_name if given[name] >= max(threshold, floors.get(name, 0.0)))
    if not first and not options.select_phases:
        raise ValueError(f"no phase has a given fraction >= threshold {threshold}: {given}")
    result = refine(
        two_theta,
        intensity,
        list(phases),
        settings,
        options,
        start_phases=first or None,
        **start,  # type: ignore[arg-type]
    )
    kept = tuple(name for name in by_name if name not in result.dropped)
    refined = result.weight_fractions()
    difference = {name: refined.get(name, 0.0) - given[name] for name in by_name}
    return PolishResult(given, kept, result, difference, first)
