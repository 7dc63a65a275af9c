"""Bruker (Siemens) DIFFRAC binary ``.raw`` patterns: version 3 (``RAW1.01``) and 4 (``RAW4.00``).

The layouts, all little-endian, offsets in bytes (from Bruker's DIFFRAC-plus file-format
appendix as published by xylib, GSAS-II's importer and geddes' format notes):

``RAW1.01`` (version 3): a 712-byte file header, then per range a header and its data.

=======  ==========  ==========================================================
offset   type        field (file header)
=======  ==========  ==========================================================
0        char[7]     ``RAW1.01``
8        uint32      file status (1 done, 2 active, 3 aborted, 4 interrupted)
12       uint32      number of ranges
326      char[60]    sample id
564      float32     goniometer radius, mm
568      float32     fixed divergence slit (0: none stated)
608      char[4]     anode
616      float64     K-alpha average, angstrom
624/632  float64     K-alpha1, K-alpha2, angstrom
648      float64     I(K-alpha2) / I(K-alpha1)
=======  ==========  ==========================================================

Range header (offsets from the range's start): uint32 header length at 0 (304), uint32 number
of steps at 4, float64 start 2theta at 16, float64 step at 176, float32 time per step (s) at
192, float64 wavelength at 240, uint32 data-record size at 252 (0 or 4: one float32 count),
uint32 supplementary-header size at 256. The records follow the header and the supplementary
headers; the first float32 of each is the count.

``RAW4.00`` (version 4): after a 61-byte preamble, a chain of segments, each a uint32 kind and a
uint32 length (of the whole segment). Kind 30 is the X-ray source: float64 K-alpha average,
K-alpha1, K-alpha2, K-beta and ratio at +72..+104, the anode (char[4]) at +116. A kind of 0 or
160 starts a range: the scan type (char[24]) at +32, float64 start 2theta at +72, float64 step at
+80, uint32 steps at +88, float32 time per step at +92, float64 wavelength at +112, uint32
data-record size at +136 and uint32 size of the drive records at +140; the drive records (kind
50: name char[24] at +12, float64 position at +56) start at +160, the data records after them.
The chain resumes after the last record.
"""

from __future__ import annotations

import struct

import numpy as np

from xrdpipe.readers.base import FIXED_SLIT, MeasuredPattern, _error, _positive

RAW_EXTENSIONS = (".raw",)
"""Bruker DIFFRAC binary RAW, versions 3 and 4 (told apart by their magic bytes)."""

RAW_V3_MAGIC = b"RAW1.01"
RAW_V4_MAGIC = b"RAW4.00"
RAW_V3_HEADER_BYTES = 712
RAW_V4_PREAMBLE_BYTES = 61
RAW_V4_RANGE_BYTES = 160
_ACCEPTED = "Bruker RAW version 3 ('RAW1.01') or 4 ('RAW4.00') with a 2theta range"
_TWO_THETA_SCAN_TYPES = ("locked coupled", "unlocked coupled", "detector scan", "2theta")


class _Bytes:
    """``struct.unpack_from`` over a file's bytes that fails with one named error."""

    def __init__(self, raw: bytes, source: str) -> None:
        self.raw, self.source = raw, source

    def get(self, fmt: str, at: int, what: str) -> tuple:
        if at < 0 or at + struct.calcsize(fmt) > len(self.raw):
            raise _error(
                self.source,
                f"the file ends inside {what}: {struct.calcsize(fmt)} bytes needed at offset "
                f"{at}, the file has {len(self.raw)} (truncated)",
                _ACCEPTED,
            )
        return struct.unpack_from(fmt, self.raw, at)

    def text(self, at: int, length: int) -> str:
        return self.raw[at : at + length].split(b"\0", 1)[0].decode("latin-1").strip()

    def counts(self, at: int, n: int, record: int, what: str) -> np.ndarray:
        end = at + n * record
        if end > len(self.raw):
            raise _error(
                self.source,
                f"{what} declares {n} points of {record} bytes from offset {at} ({end} bytes) "
                f"but the file has {len(self.raw)} bytes: counts and positions do not match "
                f"(truncated)",
                _ACCEPTED,
            )
        data = np.frombuffer(self.raw, dtype="<f4", count=n * record // 4, offset=at)
        return data[:: record // 4].astype(np.float64)


def _record_size(size: int, data: _Bytes, what: str) -> int:
    if size == 0:
        return 4
    if size % 4 or size > 1024:
        raise _error(
            data.source,
            f"{what} declares data records of {size} bytes",
            f"{_ACCEPTED}; records of 4 bytes (one float32 count) or a multiple of 4",
        )
    return size


def parse_bruker_raw(raw: bytes, source: str = "<raw>") -> MeasuredPattern:
    """A Bruker RAW file's bytes to a :class:`MeasuredPattern` (first range only).

    Two-theta is ``start + i * step``; intensities are the stored counts (float32). The
    wavelengths come from the file header (v3) or the X-ray source segment (v4), else the
    range's own wavelength.

    Raises:
        MeasuredPatternError: wrong magic bytes (version 1 and 2 are named as unsupported), a
            file that ends inside a header or before all the counts, no range, zero steps.
    """
    head = raw[:7]
    if head == RAW_V3_MAGIC:
        return _parse_v3(_Bytes(raw, source))
    if head == RAW_V4_MAGIC:
        return _parse_v4(_Bytes(raw, source))
    if head[:4] in (b"RAW ", b"RAW2"):
        version = "1" if head[:4] == b"RAW " else "2"
        what = f"is Bruker RAW version {version} ({head[:4]!r}), which is not read"
    else:
        what = f"does not start with a Bruker RAW magic (first bytes {raw[:8]!r})"
    raise _error(source, what, _ACCEPTED + "; re-export older files as RAW4 or .xy")


def _wavelengths(
    ka1: float, ka2: float, ratio: float, used: float, notes: list[str]
) -> tuple[float | None, float | None, float | None]:
    if _positive(ka1) is None:
        if _positive(used) is not None:
            notes.append(f"wavelength {used:.5f} A from the range header")
        return _positive(used), None, None
    return _positive(ka1), _positive(ka2), _positive(ratio)


def _parse_v3(data: _Bytes) -> MeasuredPattern:
    src = data.source
    data.get("<712s", 0, "the 712-byte file header")
    status, n_ranges = data.get("<II", 8, "the file header")
    if n_ranges < 1:
        raise _error(src, "the header declares no measurement range", _ACCEPTED)
    (radius,) = data.get("<f", 564, "the goniometer radius")
    (fixed_ds,) = data.get("<f", 568, "the divergence slit")
    ka1, ka2 = data.get("<dd", 624, "the wavelengths")
    (ratio,) = data.get("<d", 648, "the K-alpha2 ratio")
    at = RAW_V3_HEADER_BYTES
    header_len, steps = data.get("<II", at, "the first range header")
    if header_len < 260:
        raise _error(src, f"the first range header declares {header_len} bytes", _ACCEPTED)
    (start,) = data.get("<d", at + 16, "the range's start 2theta")
    (step,) = data.get("<d", at + 176, "the range's step")
    (seconds,) = data.get("<f", at + 192, "the time per step")
    (used,) = data.get("<d", at + 240, "the range's wavelength")
    (record,) = data.get("<I", at + 252, "the data-record size")
    (supplementary,) = data.get("<I", at + 256, "the supplementary-header size")
    if steps < 1 or not (np.isfinite(step) and step != 0 and np.isfinite(start)):
        raise _error(src, f"the first range has {steps} steps of {step} deg", _ACCEPTED)
    record = _record_size(record, data, "the first range")
    counts = data.counts(at + header_len + supplementary, steps, record, "the first range")
    notes = [f"Bruker RAW v3 ({data.text(608, 4) or 'anode not stated'})"]
    if status not in (1,):
        notes.append(f"file status {status} (1 = done)")
    if n_ranges > 1:
        notes.append(f"{n_ranges} ranges in the file; the first is used")
    if seconds > 0:
        notes.append(f"counts as stored ({seconds:g} s per step)")
    if radius > 0:
        notes.append(f"goniometer radius {radius:g} mm")
    slit = None
    if fixed_ds > 0:
        slit = FIXED_SLIT
        notes.append(f"divergence slit: fixed, {fixed_ds:g} (as stored)")
    k1, k2, r = _wavelengths(ka1, ka2, ratio, used, notes)
    return MeasuredPattern(
        source=src,
        two_theta=start + step * np.arange(steps, dtype=np.float64),
        intensity=counts,
        ka1=k1,
        ka2=k2,
        ka2_ratio=r,
        wavelength_source="file" if k1 is not None else "none",
        notes=tuple(notes),
        divergence_slit=slit,
        goniometer_radius_mm=_positive(radius),
    )


def _parse_v4(data: _Bytes) -> MeasuredPattern:
    src = data.source
    at = RAW_V4_PREAMBLE_BYTES
    waves = (0.0, 0.0, 0.0, 0.0, 0.0)
    anode = ""
    ranges: list[tuple[str, float, float, np.ndarray, float, float, dict[str, float]]] = []
    while at + 4 <= len(data.raw):
        (kind,) = data.get("<I", at, "a segment header")
        if kind in (0, 160):
            found, at = _v4_range(data, at)
            ranges.append(found)
            continue
        (length,) = data.get("<I", at + 4, "a segment header")
        if length < 8 or at + length > len(data.raw):
            raise _error(
                src,
                f"a segment of kind {kind} at offset {at} declares {length} bytes, "
                f"{len(data.raw) - at} remain (truncated or not RAW4)",
                _ACCEPTED,
            )
        if kind == 30 and length >= 120:
            waves = data.get("<5d", at + 72, "the X-ray source segment")
            anode = data.text(at + 116, 4)
        at += length
    if not ranges:
        raise _error(src, "no measurement range (missing data block)", _ACCEPTED)
    scan_type, start, step, counts, seconds, used, drives = ranges[0]
    if scan_type and not any(t in scan_type.lower() for t in _TWO_THETA_SCAN_TYPES):
        raise _error(
            src,
            f"the first range is a {scan_type!r} scan, not a 2theta scan",
            "Locked Coupled, Unlocked Coupled or Detector Scan ranges",
        )
    notes = [
        f"Bruker RAW v4 ({anode or 'anode not stated'}, {scan_type or 'scan type not stated'})"
    ]
    if len(ranges) > 1:
        notes.append(f"{len(ranges)} ranges in the file; the first is used")
    if seconds > 0:
        notes.append(f"counts as stored (time per step {seconds:g} as stored)")
    for name, position in drives.items():
        if "divergence" in name.lower():
            notes.append(f"divergence slit drive {name!r} at {position:g} (mode not stated)")
    k1, k2, r = _wavelengths(waves[1], waves[2], waves[4], used, notes)
    return MeasuredPattern(
        source=src,
        two_theta=start + step * np.arange(len(counts), dtype=np.float64),
        intensity=counts,
        ka1=k1,
        ka2=k2,
        ka2_ratio=r,
        wavelength_source="file" if k1 is not None else "none",
        notes=tuple(notes),
    )


def _v4_range(
    data: _Bytes, at: int
) -> tuple[tuple[str, float, float, np.ndarray, float, float, dict[str, float]], int]:
    """One range from its marker at ``at``: its fields, counts, drives; and where it ends."""
    src = data.source
    data.get(f"<{RAW_V4_RANGE_BYTES}s", at, "a range header")
    scan_type = data.text(at + 32, 24)
    start, step = data.get("<dd", at + 72, "a range's start and step")
    (steps,) = data.get("<I", at + 88, "a range's number of steps")
    (seconds,) = data.get("<f", at + 92, "a range's time per step")
    (used,) = data.get("<d", at + 112, "a range's wavelength")
    record, drive_bytes = data.get("<II", at + 136, "a range's record sizes")
    if steps < 1 or not (np.isfinite(step) and step != 0 and np.isfinite(start)):
        raise _error(src, f"a range at offset {at} has {steps} steps of {step} deg", _ACCEPTED)
    record = _record_size(record, data, f"the range at offset {at}")
    drives: dict[str, float] = {}
    cursor, end = at + RAW_V4_RANGE_BYTES, at + RAW_V4_RANGE_BYTES + drive_bytes
    while cursor < end:
        kind, length = data.get("<II", cursor, "a drive record")
        if length < 8 or cursor + length > end:
            raise _error(
                src,
                f"a drive record at offset {cursor} declares {length} bytes, past the range "
                f"header's {drive_bytes} bytes of drive records",
                _ACCEPTED,
            )
        if kind == 50 and length >= 64:
            drives[data.text(cursor + 12, 24)] = data.get("<d", cursor + 56, "a drive")[0]
        cursor += length
    counts = data.counts(end, steps, record, f"the range at offset {at}")
    found = (scan_type, start, step, counts, seconds, used, drives)
    return found, end + steps * record
