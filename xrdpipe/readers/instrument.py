"""The instrument a measured scan was taken with, as the engine's :class:`ProfileConfig`.

A lab passes one of its scans (``--instrument SCAN``) and the training patterns are rendered
as that instrument measures: :func:`profile_from_scan` takes a base profile (the phase set's
defaults, :func:`xrdpipe.config.phase_set.phase_set_subset`) and replaces what the scan's
file states:

1. **lines**: K-alpha1, K-alpha2 and I(K-alpha2)/I(K-alpha1) -> ``ka_doublet: true`` with
   ``ka1``, ``ka2``, ``ka2_ratio``; one line (no K-alpha2, or a ratio of 0: a K-alpha1
   monochromator) -> ``ka_doublet: false`` and ``ka1`` (the simulation wavelength follows the
   profile, see :func:`~xrdpipe.config.phase_set.simulation_wavelength`); a doublet without a
   ratio keeps the base's ratio;
2. **grid**: the scan's first and last two-theta and its number of points (the model sees the
   scan's own grid; a scan with uneven steps gets a uniform grid of as many points);
3. **divergence slit**: ``fixed`` or ``automatic`` (intensities times sin(theta));
4. **goniometer radius** R, mm (the sample displacement's Δ2θ = −2 s cos θ / R).

What the file does not state is kept from ``base`` and named in :attr:`ScanInstrument.kept`
(a two-column ``.xy`` gives the grid only). No reader gives a monochromator, so
``monochromator_two_theta_deg`` is always the base's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xrdpipe.patterns.config import InstrumentConfig, ProfileConfig
from xrdpipe.readers.base import MeasuredPattern

UNEVEN_STEP_RTOL = 1e-3
"""Relative spread of a scan's steps above which it is called uneven (a note says so)."""
GRID_DECIMALS = 6
"""Two-theta ends are rounded to 1e-6 degrees (a file's float noise, far below any step)."""


@dataclass(frozen=True)
class ScanInstrument:
    """A profile read from a scan, and what was read and what was kept.

    Attributes:
        profile: ``base`` with the scan's values.
        read: one line per value taken from the scan (``"two-theta 10-100 deg, 4501 points"``).
        kept: one line per value the scan does not state, kept from ``base``.
    """

    profile: ProfileConfig
    read: tuple[str, ...]
    kept: tuple[str, ...]


def _lines(pattern: MeasuredPattern, base: ProfileConfig, read: list[str], kept: list[str]):
    if pattern.ka1 is None:
        line = f"K-alpha doublet {base.ka1}/{base.ka2} A" if base.ka_doublet else f"{base.ka1} A"
        kept.append(f"wavelength: {line} (the scan gives none)")
        return {}
    ratio = pattern.ka2_ratio
    if pattern.ka2 is None or pattern.ka2 == pattern.ka1 or (ratio is not None and ratio <= 0):
        read.append(f"one line: {pattern.ka1} A (no K-alpha2: ka_doublet false)")
        return {"ka_doublet": False, "ka1": pattern.ka1}
    if ratio is None:
        ratio = base.ka2_ratio
        kept.append(f"K-alpha2/K-alpha1 ratio {ratio} (the scan gives the lines, not the ratio)")
    read.append(f"K-alpha doublet: {pattern.ka1}/{pattern.ka2} A, ratio {ratio}")
    return {"ka_doublet": True, "ka1": pattern.ka1, "ka2": pattern.ka2, "ka2_ratio": ratio}


def _grid(pattern: MeasuredPattern, read: list[str]) -> dict[str, float | int]:
    two_theta = np.asarray(pattern.two_theta, dtype=np.float64)
    low = round(float(two_theta[0]), GRID_DECIMALS)
    high = round(float(two_theta[-1]), GRID_DECIMALS)
    n = int(two_theta.size)
    line = f"two-theta {low:g}-{high:g} deg, {n} points (step {(high - low) / (n - 1):.5g} deg)"
    steps = np.diff(two_theta)
    if np.ptp(steps) > UNEVEN_STEP_RTOL * abs(float(np.mean(steps))):
        line += "; the scan's steps are uneven, the grid is uniform with as many points"
    read.append(line)
    return {"two_theta_min": low, "two_theta_max": high, "n_points": n}


def _instrument(
    pattern: MeasuredPattern, base: ProfileConfig, read: list[str], kept: list[str]
) -> InstrumentConfig | None:
    instrument = base.instrument
    update: dict[str, object] = {}
    if pattern.divergence_slit is not None:
        update["divergence_slit"] = pattern.divergence_slit
        read.append(f"divergence slit: {pattern.divergence_slit}")
    if pattern.goniometer_radius_mm is not None:
        update["goniometer_radius_mm"] = pattern.goniometer_radius_mm
        read.append(f"goniometer radius {pattern.goniometer_radius_mm:g} mm")
    shown = instrument or InstrumentConfig()
    if "divergence_slit" not in update:
        kept.append(f"divergence slit: {shown.divergence_slit} (the scan does not say)")
    if "goniometer_radius_mm" not in update:
        kept.append(f"goniometer radius {shown.goniometer_radius_mm:g} mm (the scan does not say)")
    monochromator = shown.monochromator_two_theta_deg
    kept.append(
        f"monochromator: {'none' if monochromator is None else f'2theta_m {monochromator} deg'} "
        "(no reader gives it)"
    )
    if not update:
        return instrument
    if instrument is None:
        read.append("an instrument section is added to hold them (other effects off)")
        instrument = InstrumentConfig()
    return instrument.model_copy(update=update)


def read_instrument(pattern: MeasuredPattern, base: ProfileConfig) -> ScanInstrument:
    """``base`` with what ``pattern``'s file states (lines, grid, slit, radius), and notes.

    Args:
        pattern: a scan as read by :func:`~xrdpipe.readers.read_pattern`.
        base: the profile whose values stand where the scan says nothing.

    Returns:
        The profile, with one line per value read and per value kept.
    """
    read: list[str] = []
    kept: list[str] = []
    update: dict[str, object] = {
        **_lines(pattern, base, read, kept),
        **_grid(pattern, read),
        "instrument": _instrument(pattern, base, read, kept),
    }
    data = {**base.model_dump(), **update}
    if data["instrument"] is not None and not isinstance(data["instrument"], dict):
        data["instrument"] = data["instrument"].model_dump()
    profile = ProfileConfig.model_validate(data)
    return ScanInstrument(profile, tuple(read), tuple(kept))


def profile_from_scan(pattern: MeasuredPattern, base: ProfileConfig) -> ProfileConfig:
    """``base`` with the scan's wavelengths, two-theta grid, divergence slit and radius.

    Each value the scan does not give is kept from ``base``; :func:`read_instrument` returns
    the same profile with the notes saying which.
    """
    return read_instrument(pattern, base).profile
