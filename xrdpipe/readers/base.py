"""The measured pattern as read from a file, and the helpers every reader shares."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xrdpipe.errors import MeasuredPatternError

FIXED_SLIT = "fixed"
"""``MeasuredPattern.divergence_slit`` of a scan measured with a fixed divergence angle."""
AUTOMATIC_SLIT = "automatic"
"""``MeasuredPattern.divergence_slit`` of a scan with a variable (automatic) divergence slit,
which keeps the irradiated length constant (intensities grow as sin(theta))."""


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
        notes: what the reader decided (reversed scan, counting time, ignored scans, slits).
        divergence_slit: :data:`FIXED_SLIT` or :data:`AUTOMATIC_SLIT` where the file says which
            (the opening itself is in ``notes``); ``None`` if it does not.
        goniometer_radius_mm: the goniometer radius R, mm, where the file gives it (``.xrdml``
            incident beam path, Bruker RAW v3 header); ``None`` if it does not.
    """

    source: str
    two_theta: np.ndarray
    intensity: np.ndarray
    ka1: float | None = None
    ka2: float | None = None
    ka2_ratio: float | None = None
    wavelength_source: str = "none"
    notes: tuple[str, ...] = ()
    divergence_slit: str | None = None
    goniometer_radius_mm: float | None = None

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


def _positive(value: float | None) -> float | None:
    """A wavelength or ratio as stored, or ``None`` where the file leaves it 0, NaN or blank."""
    if value is None or not np.isfinite(value) or value <= 0:
        return None
    return float(value)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element: ET.Element, name: str) -> ET.Element | None:
    """First descendant with local tag ``name`` (namespace-agnostic)."""
    for child in element.iter():
        if child is not element and _local(child.tag) == name:
            return child
    return None


def _parse_xml(data: bytes | str, source: str, accepted: str, member: str = "") -> ET.Element:
    """An XML document's root, or one error naming the file (and zip member) and the place."""
    where = f"member {member}: " if member else ""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, column = exc.position
        raise _error(
            source,
            f"{where}malformed or truncated XML at line {line}, column {column} ({exc})",
            accepted,
        ) from exc


def _open_zip(raw: bytes, source: str, accepted: str) -> zipfile.ZipFile:
    """The zip archive in ``raw``, or one error for a truncated or non-zip file."""
    import io

    try:
        return zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _error(
            source, f"is not a readable zip archive, truncated or damaged ({exc})", accepted
        ) from exc


def _read_member(archive: zipfile.ZipFile, name: str, source: str, accepted: str) -> bytes:
    """One member's bytes, or one error for a member that is missing or damaged."""
    try:
        return archive.read(name)
    except KeyError as exc:
        raise _error(source, f"the archive has no member {name}", accepted) from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise _error(
            source, f"member {name} cannot be unpacked, truncated or damaged ({exc})", accepted
        ) from exc
