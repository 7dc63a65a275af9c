"""Rigaku ``.ras`` (text) and ``.rasx`` (zip) patterns.

``.ras`` (Latin-1 text): ``*RAS_DATA_START``, then per scan ``*RAS_HEADER_START``, lines
``*KEY "value"``, ``*RAS_HEADER_END``, ``*RAS_INT_START``, rows ``two_theta intensity
attenuation``, ``*RAS_INT_END``; ``*RAS_DATA_END``. Keys read: ``MEAS_SCAN_AXIS_X``,
``MEAS_SCAN_UNIT_X``, ``MEAS_DATA_COUNT``, ``MEAS_SCAN_SPEED``/``_UNIT``,
``HW_XG_WAVE_LENGTH_ALPHA1``/``ALPHA2``, ``MEAS_COND_XG_WAVE_TYPE`` (``Ka``: the K-alpha
doublet; ``Ka1``: alpha1 only) and the axes ``MEAS_COND_AXIS_NAME-n``/``POSITION-n`` (the
divergence slit among them).

``.rasx`` (zip): ``Data0/Profile0.txt`` (tab-separated ``two_theta intensity attenuation``,
UTF-8 with a byte-order mark) and ``Data0/MesurementConditions0.xml`` (Rigaku's spelling) with
``ScanInformation`` (``AxisName``...), ``HWConfigurations/XrayGenerator``
(``WavelengthKalpha1``, ``WavelengthKalpha2``), ``Axes/Axis`` (``Name``, ``Position``) and
``RASHeader`` (``Pair``: ``Key``, ``Value``: the ``.ras`` keys).

In both, the intensity is the stored value times the attenuation factor (the third column).
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

RAS_EXTENSIONS = (".ras",)
"""Rigaku RAS text."""
RASX_EXTENSIONS = (".rasx",)
"""Rigaku SmartLab Studio zipped RASX."""
RIGAKU_KA2_RATIO = 0.5
"""I(K-alpha2)/I(K-alpha1) assumed for a ``Ka`` (doublet) scan: RAS and RASX do not store it."""

_ACCEPTED_RAS = (
    "Rigaku RAS text: *RAS_HEADER_START ... *RAS_HEADER_END, *RAS_INT_START, rows "
    "'two_theta intensity [attenuation]', *RAS_INT_END"
)
_ACCEPTED_RASX = (
    "Rigaku RASX: a zip with Data0/Profile0.txt (two_theta, intensity, attenuation) and "
    "Data0/MesurementConditions0.xml"
)
_HEADER_LINE = re.compile(r'^\*(\S+)\s+"(.*)"\s*$')
_SLIT_AXES = {"ds", "divergenceslit", "incidentslit", "incidentslitbox"}
_FIXED_OPENING = re.compile(r"^\s*[\d.]+(\s*/\s*[\d.]+)?\s*(deg|mm|°)?\s*$", re.IGNORECASE)


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()


def _float(text: str | None) -> float | None:
    try:
        return float((text or "").strip())
    except ValueError:
        return None


def _conditions(
    keys: dict[str, str], source: str, accepted: str, notes: list[str]
) -> tuple[float | None, float | None, float | None, str | None]:
    """Wavelengths, ratio and slit kind from the RAS keys; checks the scan axis and unit."""
    axis = keys.get("MEAS_SCAN_AXIS_X", "")
    if axis and not any(k in _key(axis) for k in ("twotheta", "2theta")):
        raise _error(source, f"the scan axis is {axis!r}, not 2theta", accepted)
    unit = keys.get("MEAS_SCAN_UNIT_X", "deg")
    if unit and _key(unit) not in ("deg", "degree", "degrees", "°"):
        raise _error(source, f"the scan unit is {unit!r}", f"{accepted}, in degrees")
    ka1 = _positive(_float(keys.get("HW_XG_WAVE_LENGTH_ALPHA1")))
    ka2 = _positive(_float(keys.get("HW_XG_WAVE_LENGTH_ALPHA2")))
    wave = keys.get("MEAS_COND_XG_WAVE_TYPE", "").strip()
    ratio = None
    if ka1 is not None:
        if wave.lower() == "ka" and ka2 is not None:
            ratio = RIGAKU_KA2_RATIO
            notes.append(f"K-alpha doublet: ratio {RIGAKU_KA2_RATIO} assumed (not in the file)")
        else:
            ka2 = None
            notes.append(f"wave type {wave or 'not stated'}: K-alpha1 only")
    speed = keys.get("MEAS_SCAN_SPEED")
    if speed:
        notes.append(f"scan speed {speed} {keys.get('MEAS_SCAN_SPEED_UNIT', '')}".strip())
    slit = None
    for name_key, name in keys.items():
        if not name_key.startswith("MEAS_COND_AXIS_NAME-") or _key(name) not in _SLIT_AXES:
            continue
        position = keys.get(name_key.replace("_NAME-", "_POSITION-"), "").strip()
        low = position.lower()
        if any(w in low for w in ("auto", "var", "ihl", "irradiat")):
            slit = AUTOMATIC_SLIT
        elif _FIXED_OPENING.match(position):
            slit = FIXED_SLIT
        notes.append(f"divergence slit: {slit or 'mode not stated'}, {name} = {position!r}")
        break
    return ka1, ka2, ratio, slit


def _rows(lines: list[tuple[int, str]], source: str, accepted: str) -> np.ndarray:
    """``(n, 3)`` two-theta, intensity, attenuation (1 where the column is absent)."""
    out = []
    for number, line in lines:
        parts = line.replace(",", " ").split()
        try:
            values = [float(p) for p in parts[:3]]
        except ValueError:
            raise _error(
                source, f"line {number} is not numeric: {line.strip()[:60]!r}", accepted
            ) from None
        if len(values) < 2:
            raise _error(source, f"line {number} has {len(values)} column(s)", accepted)
        out.append(values + [1.0] * (3 - len(values)))
    if not out:
        raise _error(source, "no data rows (missing data block)", accepted)
    return np.asarray(out, dtype=np.float64)


def _pattern(
    source: str, table: np.ndarray, keys: dict[str, str], accepted: str, notes: list[str]
) -> MeasuredPattern:
    declared = keys.get("MEAS_DATA_COUNT")
    if declared and _float(declared) is not None and int(float(declared)) != len(table):
        raise _error(
            source,
            f"MEAS_DATA_COUNT declares {int(float(declared))} points but {len(table)} data "
            f"rows follow",
            "as many (two_theta, intensity) rows as MEAS_DATA_COUNT",
        )
    ka1, ka2, ratio, slit = _conditions(keys, source, accepted, notes)
    attenuation = table[:, 2]
    if np.any(attenuation != 1.0):
        notes.append("intensities multiplied by the attenuation factors (third column)")
    return MeasuredPattern(
        source=source,
        two_theta=table[:, 0].copy(),
        intensity=table[:, 1] * attenuation,
        ka1=ka1,
        ka2=ka2,
        ka2_ratio=ratio,
        wavelength_source="file" if ka1 is not None else "none",
        notes=tuple(notes),
        divergence_slit=slit,
    )


def parse_ras(text: str, source: str = "<ras>") -> MeasuredPattern:
    """A Rigaku RAS document to a :class:`MeasuredPattern` (first scan only).

    Raises:
        MeasuredPatternError: no ``*RAS_HEADER_START`` (not RAS), a header or data block that
            does not end (truncated), a non-numeric row, a row count that differs from
            ``MEAS_DATA_COUNT``, a scan axis other than 2theta.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "*RAS_HEADER_START"]
    if not starts:
        raise _error(source, "no *RAS_HEADER_START line (not a Rigaku RAS file)", _ACCEPTED_RAS)
    keys: dict[str, str] = {}
    i = starts[0] + 1
    while i < len(lines) and lines[i].strip() != "*RAS_HEADER_END":
        match = _HEADER_LINE.match(lines[i].strip())
        if match:
            keys[match.group(1)] = match.group(2)
        i += 1
    try:
        begin = next(j for j in range(i, len(lines)) if lines[j].strip() == "*RAS_INT_START")
    except StopIteration:
        raise _error(
            source, "no *RAS_INT_START after the header (missing data block)", _ACCEPTED_RAS
        ) from None
    data: list[tuple[int, str]] = []
    for j in range(begin + 1, len(lines)):
        line = lines[j].strip()
        if line == "*RAS_INT_END":
            break
        if line and not line.startswith(("*", "#")):
            data.append((j + 1, line))
    else:
        raise _error(source, "the data block has no *RAS_INT_END (truncated file)", _ACCEPTED_RAS)
    notes = ["Rigaku RAS"]
    if len(starts) > 1:
        notes.append(f"{len(starts)} scans in the file; the first is used")
    return _pattern(source, _rows(data, source, _ACCEPTED_RAS), keys, _ACCEPTED_RAS, notes)


def _rasx_keys(root: ET.Element) -> dict[str, str]:
    """The RAS keys of a RASX conditions document (RASHeader pairs, else the XML fields)."""
    keys: dict[str, str] = {}
    header = _find(root, "RASHeader")
    for pair in [] if header is None else header:
        values = [(c.text or "").strip() for c in pair]
        if len(values) >= 2 and values[0]:
            keys[values[0]] = values[1]
    fallbacks = {
        "HW_XG_WAVE_LENGTH_ALPHA1": "WavelengthKalpha1",
        "HW_XG_WAVE_LENGTH_ALPHA2": "WavelengthKalpha2",
        "MEAS_SCAN_AXIS_X": "AxisName",
    }
    for key, tag in fallbacks.items():
        element = _find(root, tag)
        if key not in keys and element is not None and (element.text or "").strip():
            keys[key] = (element.text or "").strip()
    axes = _find(root, "Axes")
    for n, axis in enumerate([] if axes is None else axes):
        if _local(axis.tag) == "Axis" and f"MEAS_COND_AXIS_NAME-{n}" not in keys:
            keys[f"MEAS_COND_AXIS_NAME-{n}"] = axis.get("Name", "")
            keys[f"MEAS_COND_AXIS_POSITION-{n}"] = axis.get("Position", "")
    return keys


def parse_rasx(raw: bytes, source: str = "<rasx>") -> MeasuredPattern:
    """A Rigaku RASX file's bytes to a :class:`MeasuredPattern` (first profile only).

    Raises:
        MeasuredPatternError: a truncated or non-zip file, no ``Data*/Profile*.txt`` or no
            conditions XML beside it, malformed XML, a non-numeric row, a row count other than
            ``MEAS_DATA_COUNT``, a scan axis other than 2theta.
    """
    archive = _open_zip(raw, source, _ACCEPTED_RASX)
    names = archive.namelist()
    profiles = sorted(n for n in names if re.search(r"(^|/)Profile\d*\.txt$", n))
    if not profiles:
        raise _error(source, "the archive has no Data*/Profile*.txt member", _ACCEPTED_RASX)
    profile = profiles[0]
    folder, _, stem = profile.rpartition("/")
    number = stem[len("Profile") : -len(".txt")]
    candidates = [
        f"{folder}/{spelling}{number}.xml".lstrip("/")
        for spelling in ("MesurementConditions", "MeasurementConditions")
    ]
    conditions = next((c for c in candidates if c in names), None)
    if conditions is None:
        raise _error(source, f"the archive has no {candidates[0]} beside {profile}", _ACCEPTED_RASX)
    root = _parse_xml(
        _read_member(archive, conditions, source, _ACCEPTED_RASX),
        source,
        _ACCEPTED_RASX,
        conditions,
    )
    text = _read_member(archive, profile, source, _ACCEPTED_RASX).decode("utf-8-sig", "replace")
    rows = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    table = _rows(rows, f"{source} ({profile})", _ACCEPTED_RASX)
    notes = [f"Rigaku RASX, {profile}"]
    if len(profiles) > 1:
        notes.append(f"{len(profiles)} profiles in the archive; the first is used")
    return _pattern(source, table, _rasx_keys(root), _ACCEPTED_RASX, notes)
