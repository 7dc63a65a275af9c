"""PANalytical ``.xrdml`` patterns (the first 2Theta scan)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from xrdpipe.readers.base import (
    AUTOMATIC_SLIT,
    FIXED_SLIT,
    MeasuredPattern,
    _error,
    _find,
    _local,
    _parse_xml,
    _positive,
)

XML_EXTENSIONS = (".xrdml",)
"""PANalytical XRDML (any 1.x namespace)."""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _numbers(element: ET.Element | None, what: str, source: str) -> np.ndarray:
    if element is None or element.text is None or not element.text.strip():
        raise _error(source, f"<{what}> is missing or empty", "an XRDML scan with numeric data")
    try:
        return np.asarray([float(v) for v in element.text.split()], dtype=np.float64)
    except ValueError as exc:
        raise _error(source, f"<{what}> holds a non-number ({exc})", "numbers") from exc


def parse_xrdml(text: str | bytes, source: str = "<xrdml>") -> MeasuredPattern:
    """A PANalytical XRDML document to a :class:`MeasuredPattern` (first scan only).

    Reads ``usedWavelength`` (``kAlpha1``, ``kAlpha2``, ``ratioKAlpha2KAlpha1``; a bare
    ``kAlpha1``/``kBeta`` is accepted), the scan's ``positions axis="2Theta"`` as
    ``listPositions`` or ``startPosition``/``endPosition`` (uniform), and ``intensities`` or
    ``counts``; intensities are divided by ``commonCountingTime`` or per-point
    ``countingTimes`` when given (counts per second). The incident beam's ``divergenceSlit``
    gives ``divergence_slit`` (see :func:`divergence_slit`), its ``radius`` (mm) the
    goniometer radius.

    Raises:
        MeasuredPatternError: malformed or truncated XML, no scan, no 2Theta axis, or
            positions and intensities of different lengths.
    """
    accepted = "PANalytical XRDML 1.x with a 2Theta scan"
    root = _parse_xml(text, source, accepted)
    if _local(root.tag) != "xrdMeasurements":
        raise _error(
            source, f"root element is <{_local(root.tag)}>, not <xrdMeasurements>", accepted
        )
    ka1 = ka2 = ratio = None
    used = _find(root, "usedWavelength")
    if used is not None:
        values = {}
        for child in used:
            try:
                values[_local(child.tag)] = float((child.text or "").strip())
            except ValueError:
                continue
        ka1 = values.get("kAlpha1")
        ka2 = values.get("kAlpha2")
        ratio = values.get("ratioKAlpha2KAlpha1")
    notes: list[str] = []
    scans = [e for e in root.iter() if _local(e.tag) == "scan"]
    if not scans:
        raise _error(source, "no <scan> element", accepted)
    if len(scans) > 1:
        notes.append(f"{len(scans)} scans in the file; the first is used")
    data = _find(scans[0], "dataPoints")
    if data is None:
        raise _error(source, "the scan has no <dataPoints>", accepted)
    axis = next(
        (p for p in _children(data, "positions") if p.get("axis", "").lower() == "2theta"), None
    )
    if axis is None:
        found = [p.get("axis") for p in _children(data, "positions")]
        raise _error(source, f'no <positions axis="2Theta"> (axes found: {found})', accepted)
    counts_el = _find(data, "intensities")
    if counts_el is None:
        counts_el = _find(data, "counts")
    intensity = _numbers(counts_el, "intensities or counts", source)
    listed = _find(axis, "listPositions")
    if listed is not None:
        two_theta = _numbers(listed, "listPositions", source)
    else:
        start = _numbers(_find(axis, "startPosition"), "startPosition", source)[0]
        end = _numbers(_find(axis, "endPosition"), "endPosition", source)[0]
        two_theta = np.linspace(start, end, len(intensity))
    if len(two_theta) != len(intensity):
        raise _error(
            source,
            f"{len(two_theta)} 2Theta positions but {len(intensity)} intensities",
            "one intensity per position",
        )
    common = _find(data, "commonCountingTime")
    per_point = _find(data, "countingTimes")
    if per_point is not None:
        times = _numbers(per_point, "countingTimes", source)
        if len(times) == len(intensity) and np.all(times > 0):
            intensity = intensity / times
            notes.append("intensities divided by the per-point counting times (counts/s)")
    elif common is not None:
        seconds = float(_numbers(common, "commonCountingTime", source)[0])
        if seconds > 0:
            intensity = intensity / seconds
            notes.append(f"intensities divided by the counting time {seconds:g} s (counts/s)")
    slit = divergence_slit(root)
    if slit is not None:
        notes.append(f"divergence slit: {slit[1]}")
    radius = goniometer_radius_mm(root)
    if radius is not None:
        notes.append(f"goniometer radius {radius:g} mm")
    return MeasuredPattern(
        source=source,
        two_theta=two_theta,
        intensity=intensity,
        ka1=ka1,
        ka2=ka2,
        ka2_ratio=ratio,
        wavelength_source="file" if ka1 is not None else "none",
        notes=tuple(notes),
        divergence_slit=None if slit is None else slit[0],
        goniometer_radius_mm=radius,
    )


def goniometer_radius_mm(root: ET.Element) -> float | None:
    """The incident beam path's ``radius`` in mm (``None`` if absent, not in mm, or not > 0)."""
    beam = _find(root, "incidentBeamPath")
    radius = None if beam is None else _find(beam, "radius")
    if radius is None or radius.get("unit", "mm").strip().lower() != "mm":
        return None
    try:
        return _positive(float((radius.text or "").strip()))
    except ValueError:
        return None


_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def divergence_slit(root: ET.Element) -> tuple[str | None, str] | None:
    """The incident beam's divergence slit: ``(kind, description)``, or ``None`` if absent.

    ``kind`` is :data:`FIXED_SLIT` or :data:`AUTOMATIC_SLIT` from the element's ``xsi:type``
    (``fixedDivergenceSlitType``, ``automaticDivergenceSlitType``...) or, for a programmable
    slit, from the presence of an ``irradiatedLength`` (automatic) or a fixed ``angle``;
    ``None`` when the file does not say.
    """
    beam = _find(root, "incidentBeamPath")
    slit = None if beam is None else _find(beam, "divergenceSlit")
    if slit is None:
        return None
    xsi = slit.get(_XSI_TYPE, "")
    values = {_local(c.tag): f"{(c.text or '').strip()} {c.get('unit', '')}".strip() for c in slit}
    kind = None
    if "automatic" in xsi.lower() or "irradiatedLength" in values:
        kind = AUTOMATIC_SLIT
    elif "fixed" in xsi.lower() or "angle" in values:
        kind = FIXED_SLIT
    shown = ", ".join(f"{k} {v}" for k, v in values.items() if v)
    return kind, f"{kind or 'mode not stated'} ({xsi or 'no type'}{'; ' + shown if shown else ''})"
