"""The measured pattern as read from a file, and the error every reader raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrdpipe.errors import MeasuredPatternError


@dataclass(frozen=True)
class MeasuredPattern:
    """A measured pattern as read from a file.

    Attributes:
        source: the file (for messages).
        two_theta: strictly increasing angles, degrees.
        intensity: intensities (counts, or counts per second when a counting time was given).
        ka1: K-alpha1 (or the only) wavelength, angstrom; ``None`` if the file gives none.
        ka2: K-alpha2 wavelength, angstrom, if given.
        ka2_ratio: I(K-alpha2) / I(K-alpha1), if given.
        wavelength_source: ``file``, ``user`` or ``none``.
        notes: what the reader decided (reversed scan, counting time, ignored scans).
    """

    source: str
    two_theta: np.ndarray
    intensity: np.ndarray
    ka1: float | None = None
    ka2: float | None = None
    ka2_ratio: float | None = None
    wavelength_source: str = "none"
    notes: tuple[str, ...] = ()

    def wavelength(self, doublet_model: bool = False) -> float | None:
        """The effective wavelength, angstrom (``None`` if unknown).

        The K-alpha weighted mean, or ``ka1`` for a model trained on rendered doublets
        (``doublet_model``).
        """
        if self.ka1 is None:
            return None
        if doublet_model or self.ka2 is None or not self.ka2_ratio:
            return self.ka1
        return (self.ka1 + self.ka2_ratio * self.ka2) / (1.0 + self.ka2_ratio)


def _error(source: str | Path, what: str, accepted: str) -> MeasuredPatternError:
    return MeasuredPatternError(f"{source}: {what}; accepted: {accepted}")
