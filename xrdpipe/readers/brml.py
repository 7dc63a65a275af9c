"""Bruker DIFFRAC ``.brml`` patterns: a zip of XML documents.

Layout (as written by DIFFRAC.Measurement; published by the readers of FAIRmat and geddes):
``Experiment0/DataContainer.xml`` lists the raw-data members under
``RawDataReferenceList/string`` (``Experiment0/RawData0.xml``...). A ``RawData*.xml`` holds
``DataRoutes/DataRoute`` (the one with ``RouteFlag="Measured"`` where several) with
``ScanInformation`` (``MeasurementPoints``, ``TimePerStep``, ``ScanAxes/ScanAxisInfo`` with
``AxisId``/``AxisName``, ``Start``, ``Stop``, ``Increment``), one ``Datum`` element per point
(comma-separated numbers) and ``DataViews``: ``RawDataView`` elements whose ``Start`` and
``Length`` give the columns of a ``Datum``: a ``VaryingRawDataView`` whose ``FieldDefinitions``
name the moving axes (``TwoTheta``, ``Theta``...) in column order and a ``RecordedRawDataView``
(the counts). The tube (``FixedInformation/Instrument/.../Tube``) gives ``WaveLengthAlpha1``,
``WaveLengthAlpha2`` and ``WaveLengthRatio`` (``Value`` attributes, angstrom).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from xrdpipe.readers.base import (
    AUTOMATIC_SLIT,
    FIXED_SLIT,
    MeasuredPattern,
    _error,
    _find,
    _local,
    _open_zip,
    _parse_xml,
    _positive,
    _read_member,
)

BRML_EXTENSIONS = (".brml",)
"""Bruker DIFFRAC.Measurement zipped XML."""

_ACCEPTED = (
    "Bruker BRML: a zip with Experiment0/DataContainer.xml and RawData*.xml holding a "
    "TwoTheta scan (Datum rows with a TwoTheta column, or ScanAxisInfo start/stop/step)"
)
_RAW_DATA = re.compile(r"(^|/)RawData\d*\.xml$", re.IGNORECASE)
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _value(element: ET.Element | None) -> float | None:
    """A number from a ``Value`` attribute or the element's text."""
    if element is None:
        return None
    text = element.get("Value", element.text or "")
    try:
        return float(text.strip())
    except ValueError:
        return None


def _members(archive, raw_names: list[str], source: str) -> list[str]:
    listed = [n for n in raw_names if n.lower().endswith("datacontainer.xml")]
    if listed:
        root = _parse_xml(_read_member(archive, listed[0], source, _ACCEPTED), source, _ACCEPTED)
        refs = _find(root, "RawDataReferenceList")
        names = [] if refs is None else [(c.text or "").strip() for c in refs]
        names = [n for n in names if n]
        if names:
            return names
    return sorted(n for n in raw_names if _RAW_DATA.search(n))


def _route(root: ET.Element, source: str) -> ET.Element:
    routes = [e for e in root.iter() if _local(e.tag) == "DataRoute"]
    measured = [r for r in routes if r.get("RouteFlag", "Measured") == "Measured"]
    if not routes:
        raise _error(source, "the raw data has no <DataRoute> (missing data block)", _ACCEPTED)
    return (measured or routes)[0]


def _columns(route: ET.Element) -> tuple[int | None, int | None, int | None]:
    """Columns of a ``Datum`` row: (two-theta, counts, divergence slit), ``None`` if absent."""
    two_theta = counts = slit = None
    for view in route.iter():
        if _local(view.tag) != "RawDataView":
            continue
        kind = view.get(_XSI_TYPE, "").rsplit(":", 1)[-1]
        try:
            start = int(view.get("Start", ""))
        except ValueError:
            continue
        if kind == "VaryingRawDataView":
            fields = [f for f in view.iter() if _local(f.tag) == "FieldDefinitions"]
            for offset, field in enumerate(fields):
                axis = (field.get("AxisId") or field.get("FieldName") or "").strip().lower()
                if axis == "twotheta" and two_theta is None:
                    two_theta = start + offset
                elif "divergence" in axis and slit is None:
                    slit = start + offset
        elif kind == "RecordedRawDataView" and counts is None:
            counts = start
    return two_theta, counts, slit


def parse_brml(raw: bytes, source: str = "<brml>") -> MeasuredPattern:
    """A Bruker BRML file's bytes to a :class:`MeasuredPattern` (first raw-data member).

    Two-theta is the ``TwoTheta`` column of the ``Datum`` rows where the varying view has one,
    else ``Start``..``Stop`` of the ``TwoTheta`` scan axis spread over the rows (the step must
    agree with ``Increment``). Intensities are the recorded column, as stored. A divergence
    slit that moves during the scan (a varying column) is automatic; a ``DivergenceSlit``
    drive held at one position is fixed.

    Raises:
        MeasuredPatternError: a truncated or non-zip file, no raw-data member, malformed XML,
            no data route or rows, no TwoTheta axis, or a row/axis length mismatch.
    """
    archive = _open_zip(raw, source, _ACCEPTED)
    names = _members(archive, archive.namelist(), source)
    if not names:
        raise _error(source, "the archive has no RawData*.xml member", _ACCEPTED)
    root = _parse_xml(
        _read_member(archive, names[0], source, _ACCEPTED), source, _ACCEPTED, names[0]
    )
    route = _route(root, source)
    rows = [(d.text or "").split(",") for d in route.iter() if _local(d.tag) == "Datum"]
    if not rows:
        raise _error(source, f"{names[0]} has no <Datum> rows (missing data block)", _ACCEPTED)
    col_tt, col_counts, col_slit = _columns(route)
    width = min(len(r) for r in rows)
    if col_counts is None:
        col_counts = width - 1  # the recorded counts are the last column
    try:
        table = np.asarray([[float(v) for v in r[:width]] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise _error(source, f"a <Datum> row holds a non-number ({exc})", _ACCEPTED) from exc
    if max(c for c in (col_tt, col_counts, col_slit) if c is not None) >= width:
        raise _error(source, f"<Datum> rows have {width} columns, fewer than the views", _ACCEPTED)
    intensity = table[:, col_counts]
    notes = [f"Bruker BRML, {names[0]}"]
    if len(names) > 1:
        notes.append(f"{len(names)} raw-data members; the first is used")
    if col_tt is not None:
        two_theta = table[:, col_tt]
    else:
        two_theta = _axis_positions(route, len(rows), source)
    slit = None
    if col_slit is not None and np.ptp(table[:, col_slit]) > 0:
        slit = AUTOMATIC_SLIT
        first, last = table[0, col_slit], table[-1, col_slit]
        notes.append(f"divergence slit: automatic, {first:g}-{last:g} over the scan")
    else:
        for drive in root.iter():
            name = drive.get("LogicName", "")
            if _local(drive.tag) == "InfoData" and "divergence" in name.lower():
                position = _find(drive, "Position")
                if position is not None and _value(position) is not None:
                    slit = FIXED_SLIT
                    unit = position.get("Unit", "")
                    notes.append(f"divergence slit: fixed, {name} at {_value(position):g} {unit}")
                    break
    tube = _find(root, "Tube")
    where = root if tube is None else tube
    ka1 = _positive(_value(_find(where, "WaveLengthAlpha1")))
    ka2 = _positive(_value(_find(where, "WaveLengthAlpha2")))
    ratio = _positive(_value(_find(where, "WaveLengthRatio")))
    seconds = _value(_find(route, "TimePerStep"))
    if seconds:
        notes.append(f"counts as stored ({seconds:g} s per step)")
    return MeasuredPattern(
        source=source,
        two_theta=two_theta,
        intensity=intensity,
        ka1=ka1,
        ka2=ka2 if ka1 is not None else None,
        ka2_ratio=ratio if ka1 is not None else None,
        wavelength_source="file" if ka1 is not None else "none",
        notes=tuple(notes),
        divergence_slit=slit,
    )


def _axis_positions(route: ET.Element, n: int, source: str) -> np.ndarray:
    """Start..Stop of the TwoTheta scan axis over ``n`` rows, checked against Increment."""
    for axis in route.iter():
        if _local(axis.tag) != "ScanAxisInfo":
            continue
        name = (axis.get("AxisId") or axis.get("AxisName") or "").lower()
        if name != "twotheta":
            continue
        start, stop = _value(_find(axis, "Start")), _value(_find(axis, "Stop"))
        step = _value(_find(axis, "Increment"))
        if start is None or stop is None:
            break
        if step and n > 1 and abs((stop - start) / step + 1 - n) > 0.5:
            expected = int(round((stop - start) / step)) + 1
            raise _error(
                source,
                f"the TwoTheta axis runs {start:g}-{stop:g} deg in steps of {step:g} "
                f"({expected} positions) but there are {n} <Datum> rows",
                "one Datum row per scan position",
            )
        return np.linspace(start, stop, n)
    raise _error(
        source, "no TwoTheta column in the data views and no TwoTheta scan axis", _ACCEPTED
    )
