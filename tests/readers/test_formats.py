"""The lab formats (Bruker ``.raw`` v3/v4 and ``.brml``, Rigaku ``.ras``/``.rasx``, GSAS ``.xye``)
on files written here to the published layouts, byte by byte, with exact expected values.

These files prove that writer and reader agree on the layout documented in each reader's module
docstring; no real instrument file was available (see docs/predict.md: experimental formats).
"""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xrdpipe.errors import MeasuredPatternError
from xrdpipe.readers import (
    ACCEPTED,
    AUTOMATIC_SLIT,
    FIXED_SLIT,
    RIGAKU_KA2_RATIO,
    ModelGrid,
    prepare_pattern,
    read_pattern,
)

KA1, KA2, KB, RATIO, KA_MEAN = 1.540598, 1.544426, 1.392250, 0.5, 1.541874
START, STEP, N = 10.0, 0.02, 3001  # 10-70 deg
COUNTS = (np.arange(N) * 7 % 1000 + 50).astype(np.float64)  # exact in float32
TWO_THETA = START + STEP * np.arange(N)


def _put(buf: bytearray, at: int, fmt: str, *values) -> None:
    struct.pack_into("<" + fmt, buf, at, *values)


def _text(buf: bytearray, at: int, text: str, size: int) -> None:
    buf[at : at + size] = text.encode("latin-1").ljust(size, b"\0")


# --- Bruker RAW -----------------------------------------------------------------------------


def raw_v3(*, record: int = 4, fixed_slit: float = 0.6, supplementary: int = 40) -> bytes:
    """RAW1.01: 712-byte file header, one 304-byte range header, supplementary bytes, records."""
    head = bytearray(712)
    _text(head, 0, "RAW1.01", 8)
    _put(head, 8, "II", 1, 1)  # done, one range
    _text(head, 16, "03/14/24", 10)
    _text(head, 26, "10:11:12", 10)
    _text(head, 326, "NiO + rutile", 60)
    _put(head, 564, "ff", 250.0, fixed_slit)
    _text(head, 608, "Cu", 4)
    _put(head, 616, "5d", KA_MEAN, KA1, KA2, KB, RATIO)
    rng = bytearray(304)
    _put(rng, 0, "II", 304, N)
    _put(rng, 8, "dd", START / 2, START)
    _put(rng, 176, "d", STEP)
    _put(rng, 192, "f", 1.5)
    _put(rng, 240, "d", KA_MEAN)
    _put(rng, 248, "III", 0 if record == 4 else 1, record, supplementary)
    records = bytearray(N * record)
    for i, c in enumerate(COUNTS):
        _put(records, i * record, "f", c)
        if record == 12:
            _put(records, i * record + 4, "d", TWO_THETA[i])
    return bytes(head + rng + bytes(range(supplementary)) + records)


def _segment(kind: int, body: bytes) -> bytes:
    return struct.pack("<II", kind, 8 + len(body)) + body


def raw_v4(*, record: int = 8, scan_type: str = "Locked Coupled", ranges: int = 1) -> bytes:
    """RAW4.00: 61-byte preamble, a text and a source segment, ranges with two drive records."""
    pre = bytearray(61)
    _text(pre, 0, "RAW4.00", 8)
    _text(pre, 12, "03/14/2024", 12)
    _text(pre, 24, "10:11:12", 10)
    text = bytearray(4 + 24 + 16)
    _text(text, 4, "SAMPLEID", 24)
    _text(text, 28, "NiO + rutile\n", 16)
    source = bytearray(120 - 8)
    _put(source, 72 - 8, "5d", KA_MEAN, KA1, KA2, KB, RATIO)
    _text(source, 116 - 8, "Cu", 4)
    out = bytes(pre) + _segment(10, bytes(text)) + _segment(30, bytes(source))
    drives = b""
    for name, position in (("2Theta", START), ("Divergence Slit", 0.3)):
        drive = bytearray(64 - 8)
        _put(drive, 0, "I", 1 if name == "2Theta" else 0)
        _text(drive, 4, name, 24)
        _put(drive, 56 - 8, "d", position)
        drives += _segment(50, bytes(drive))
    for k in range(ranges):
        rng = bytearray(160)
        _put(rng, 0, "II", 160, 160)
        _text(rng, 32, scan_type, 24)
        _put(rng, 72, "ddIf", START + k, STEP, N, 1500.0)
        _put(rng, 100, "ff", 40.0, 40.0)
        _put(rng, 112, "d", KA_MEAN)
        _put(rng, 136, "II", record, len(drives))
        records = bytearray(N * record)
        for i, c in enumerate(COUNTS):
            _put(records, i * record, "f", c)
            if record == 8:
                _put(records, i * record + 4, "i", 1)
        out += bytes(rng) + drives + bytes(records)
    return out


@pytest.mark.parametrize("record", [4, 12])
def test_raw_v3_positions_counts_wavelengths_and_fixed_slit(tmp_path, record):
    path = tmp_path / "scan.raw"
    path.write_bytes(raw_v3(record=record))
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS)
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RATIO)
    assert pattern.wavelength_source == "file" and pattern.divergence_slit == FIXED_SLIT
    assert "divergence slit: fixed, 0.6 (as stored)" in pattern.notes
    assert "goniometer radius 250 mm" in pattern.notes
    assert pattern.notes[0] == "Bruker RAW v3 (Cu)"


def test_raw_v4_walks_segments_strides_records_and_uses_the_first_range(tmp_path):
    path = tmp_path / "SCAN.RAW"  # extension matched case-insensitively
    path.write_bytes(raw_v4(ranges=2))
    pattern = read_pattern(path, wavelength=0.7093)
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS)
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RATIO)
    assert pattern.divergence_slit is None  # RAW4's slit mode is not decoded
    assert "divergence slit drive 'Divergence Slit' at 0.3 (mode not stated)" in pattern.notes
    assert "2 ranges in the file; the first is used" in pattern.notes
    assert "--wavelength 0.7093 ignored: the file gives its own" in pattern.notes
    four = tmp_path / "four.raw"
    four.write_bytes(raw_v4(record=4))
    np.testing.assert_array_equal(read_pattern(four).intensity, COUNTS)


# --- Bruker BRML ----------------------------------------------------------------------------

CONTAINER = """<?xml version="1.0" encoding="utf-8"?>
<DataContainer xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" Version="1">
  <MeasurementInfo UserName="user" SampleName="NiO + rutile" />
  <RawDataReferenceList><string>Experiment0/RawData0.xml</string></RawDataReferenceList>
</DataContainer>
"""

RAW_DATA = """<?xml version="1.0" encoding="utf-8"?>
<RawData xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <TimeStampStarted>2024-03-14T10:11:12+01:00</TimeStampStarted>
  <DataRoutes>
    <DataRoute RouteFlag="Measured">
      <ScanInformation ScanName="Coupled TwoTheta/Theta" VisibleName="Coupled TwoTheta/Theta">
        <MeasurementPoints>{n}</MeasurementPoints>
        <TimePerStep>0.5</TimePerStep>
        <ScanAxes>
          <ScanAxisInfo AxisId="TwoTheta" AxisName="2Theta">
            <Unit Base="Degree" Prefix="None" />
            <Reference>0</Reference><Start>{start}</Start><Stop>{stop}</Stop>
            <Increment>{step}</Increment>
          </ScanAxisInfo>
        </ScanAxes>
      </ScanInformation>
      <DataViews>
        <RawDataView xsi:type="FixedRawDataView" Start="0" Length="1" LogicName="MeasuredTime" />
        <RawDataView xsi:type="FixedRawDataView" Start="1" Length="1"
         LogicName="AbsorptionFactor" />
        <RawDataView xsi:type="VaryingRawDataView" Start="2" Length="2">
          <Varying>{fields}</Varying>
        </RawDataView>
        <RawDataView xsi:type="RecordedRawDataView" Start="4" Length="1">
          <Recording Name="Counter1D" LogicName="Counter1D"><Unit Base="Counts" /></Recording>
        </RawDataView>
      </DataViews>
      {rows}
    </DataRoute>
  </DataRoutes>
  <FixedInformation>
    <Instrument>
      <PrimaryTracks><TrackInfoData><MountedOptics>
        <InfoData xsi:type="TubeMountInfoData" LogicName="Tube">
          <Tube>
            <TubeMaterial>Cu</TubeMaterial>
            <WaveLengthAlpha1 Value="{ka1}" Unit="Angstrom" />
            <WaveLengthAlpha2 Value="{ka2}" Unit="Angstrom" />
            <WaveLengthBeta Value="{kb}" Unit="Angstrom" />
            <WaveLengthRatio Value="{ratio}" />
          </Tube>
        </InfoData>
      </MountedOptics></TrackInfoData></PrimaryTracks>
    </Instrument>
    <Drives>
      <InfoData LogicName="TwoTheta"><Position Value="{start}" Unit="Degree" /></InfoData>
      {slit_drive}
    </Drives>
  </FixedInformation>
</RawData>
"""


def brml(*, varying_slit: bool = False, rows: int = N, stop: float | None = None) -> bytes:
    """A BRML zip: DataContainer.xml naming RawData0.xml; Datum rows 'time,absorption,a,b,count'
    where the varying columns are (TwoTheta, Theta), or (Theta, DivergenceSlit) with
    ``varying_slit`` so that two-theta comes from the scan axis."""
    if varying_slit:
        fields = '<FieldDefinitions AxisId="Theta" /><FieldDefinitions AxisId="DivergenceSlit" />'
        datum = [
            f"0.5,1,{t / 2:.6f},{0.1 + i * 1e-4:.4f},{int(c)}"
            for i, (t, c) in enumerate(zip(TWO_THETA[:rows], COUNTS[:rows], strict=True))
        ]
        slit_drive = ""
    else:
        fields = '<FieldDefinitions AxisId="TwoTheta" /><FieldDefinitions AxisId="Theta" />'
        datum = [
            f"0.5,1,{t:.4f},{t / 2:.4f},{int(c)}"
            for t, c in zip(TWO_THETA[:rows], COUNTS[:rows], strict=True)
        ]
        slit_drive = (
            '<InfoData LogicName="DivergenceSlit"><Position Value="0.6" Unit="mm" /></InfoData>'
        )
    doc = RAW_DATA.format(
        n=rows,
        start=START,
        stop=TWO_THETA[-1] if stop is None else stop,
        step=STEP,
        fields=fields,
        rows="\n".join(f"<Datum>{d}</Datum>" for d in datum),
        ka1=KA1,
        ka2=KA2,
        kb=KB,
        ratio=RATIO,
        slit_drive=slit_drive,
    )
    return _zip({"Experiment0/DataContainer.xml": CONTAINER, "Experiment0/RawData0.xml": doc})


def _zip(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_brml_datum_columns_tube_wavelengths_and_slits(tmp_path):
    path = tmp_path / "scan.brml"
    path.write_bytes(brml())
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta, np.round(TWO_THETA, 4), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS)
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RATIO)
    assert pattern.divergence_slit == FIXED_SLIT
    assert "divergence slit: fixed, DivergenceSlit at 0.6 mm" in pattern.notes
    assert "counts as stored (0.5 s per step)" in pattern.notes
    # no TwoTheta column: start/stop of the scan axis; a slit that moves is automatic
    auto = tmp_path / "auto.Brml"
    auto.write_bytes(brml(varying_slit=True))
    pattern = read_pattern(auto)
    np.testing.assert_allclose(pattern.two_theta, TWO_THETA, rtol=0, atol=1e-9)
    assert pattern.divergence_slit == AUTOMATIC_SLIT
    assert "divergence slit: automatic, 0.1-0.4 over the scan" in pattern.notes


# --- Rigaku RAS and RASX --------------------------------------------------------------------


def ras_header(count: int = N, axis: str = "TwoThetaTheta", wave: str = "Ka") -> list[str]:
    keys = {
        "FILE_TYPE": "RAS_RAW",
        "FILE_SAMPLE": "NiO + rutile",
        "HW_XG_TARGET_NAME": "Cu",
        "HW_XG_WAVE_LENGTH_ALPHA1": f"{KA1}",
        "HW_XG_WAVE_LENGTH_ALPHA2": f"{KA2}",
        "HW_XG_WAVE_LENGTH_BETA": f"{KB}",
        "HW_XG_WAVE_LENGTH_UNIT": "Angstrom",
        "MEAS_COND_AXIS_NAME-0": "TwoTheta",
        "MEAS_COND_AXIS_NAME-1": "DS",
        "MEAS_COND_AXIS_POSITION-0": "10.0000",
        "MEAS_COND_AXIS_POSITION-1": "1/2deg",
        "MEAS_COND_XG_WAVE_TYPE": wave,
        "MEAS_DATA_COUNT": f"{count}",
        "MEAS_SCAN_AXIS_X": axis,
        "MEAS_SCAN_SPEED": "2.0000",
        "MEAS_SCAN_SPEED_UNIT": "deg/min",
        "MEAS_SCAN_START": f"{START:.4f}",
        "MEAS_SCAN_STEP": f"{STEP:.4f}",
        "MEAS_SCAN_STOP": f"{TWO_THETA[-1]:.4f}",
        "MEAS_SCAN_UNIT_X": "deg",
        "MEAS_SCAN_UNIT_Y": "counts",
    }
    return [f'*{k} "{v}"' for k, v in keys.items()]


ATTENUATION = np.where(np.arange(N) == 100, 8.5, 1.0)  # one point behind an attenuator


def ras(count: int = N, axis: str = "TwoThetaTheta", scans: int = 1, wave: str = "Ka") -> str:
    lines = ["*RAS_DATA_START"]
    for _ in range(scans):
        lines += ["*RAS_HEADER_START", *ras_header(count, axis, wave), "*RAS_HEADER_END"]
        lines += ["*RAS_INT_START"]
        lines += [
            f"{t:.4f} {int(c)} {a:.4f}"
            for t, c, a in zip(TWO_THETA, COUNTS, ATTENUATION, strict=True)
        ]
        lines += ["*RAS_INT_END"]
    return "\r\n".join(lines + ["*RAS_DATA_END", ""])


def test_ras_header_wavelengths_attenuation_and_slit(tmp_path):
    path = tmp_path / "scan.ras"
    path.write_bytes(ras(scans=2).encode("latin-1"))
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta, np.round(TWO_THETA, 4), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS * ATTENUATION)
    assert pattern.intensity[100] == COUNTS[100] * 8.5
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RIGAKU_KA2_RATIO)
    assert pattern.divergence_slit == FIXED_SLIT
    assert "divergence slit: fixed, DS = '1/2deg'" in pattern.notes
    assert "2 scans in the file; the first is used" in pattern.notes
    mono = tmp_path / "mono.RAS"
    mono.write_bytes(ras(wave="Ka1").encode("latin-1"))
    assert read_pattern(mono).wavelength() == KA1 and read_pattern(mono).ka2 is None


def rasx(*, axis: str = "TwoThetaTheta", profile: bool = True) -> bytes:
    """A RASX zip: Data0/Profile0.txt (BOM, tabs) and Data0/MesurementConditions0.xml."""
    header = "".join(
        f"<Pair><Key>{line[1:].split(' ', 1)[0]}</Key><Value>{line.split(' ', 1)[1][1:-1]}"
        "</Value></Pair>"
        for line in ras_header(axis=axis)
        if "WAVE_LENGTH" not in line  # the XrayGenerator element gives the wavelengths
    )
    conditions = f"""<?xml version="1.0" encoding="utf-8"?>
<MeasurementConditions>
  <GeneralInformation><SampleName>NiO + rutile</SampleName></GeneralInformation>
  <ScanInformation>
    <AxisName>{axis}</AxisName><Mode>Continuous</Mode><Start>{START}</Start>
    <Stop>{TWO_THETA[-1]}</Stop><Step>{STEP}</Step><Speed>2</Speed><SpeedUnit>deg/min</SpeedUnit>
    <PositionUnit>deg</PositionUnit>
  </ScanInformation>
  <HWConfigurations>
    <XrayGenerator>
      <TargetName>Cu</TargetName><Voltage>40</Voltage><Current>30</Current>
      <WavelengthKalpha1>{KA1}</WavelengthKalpha1><WavelengthKalpha2>{KA2}</WavelengthKalpha2>
      <WavelengthKbeta>{KB}</WavelengthKbeta>
    </XrayGenerator>
  </HWConfigurations>
  <Axes><Axis Name="TwoTheta" Unit="deg" Offset="0" Position="10" /></Axes>
  <RASHeader>{header}</RASHeader>
</MeasurementConditions>
"""
    rows = "\r\n".join(
        f"{t:.4f}\t{int(c)}\t{a:.4f}"
        for t, c, a in zip(TWO_THETA, COUNTS, ATTENUATION, strict=True)
    )
    members: dict[str, str | bytes] = {
        "root.xml": "<?xml version='1.0'?><RootElement><Data0 /></RootElement>",
        "Data0/MesurementConditions0.xml": conditions,
    }
    if profile:
        members["Data0/Profile0.txt"] = "\ufeff".encode() + rows.encode()
    return _zip(members)


def test_rasx_profile_conditions_and_attenuation(tmp_path):
    path = tmp_path / "scan.rasx"
    path.write_bytes(rasx())
    pattern = read_pattern(path)
    np.testing.assert_allclose(pattern.two_theta, np.round(TWO_THETA, 4), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS * ATTENUATION)
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RIGAKU_KA2_RATIO)
    assert pattern.divergence_slit == FIXED_SLIT
    assert "intensities multiplied by the attenuation factors (third column)" in pattern.notes


# --- GSAS xye -------------------------------------------------------------------------------


def test_xye_with_comment_block_header_and_esd(tmp_path):
    lines = ["/* GSAS-II export", "   Cu Ka, 10-70 deg */", "2theta intensity esd"]
    lines += [f"{t:.4f} {c:.1f} {np.sqrt(c):.3f}" for t, c in zip(TWO_THETA, COUNTS, strict=True)]
    path = tmp_path / "scan.xye"
    path.write_text("\n".join(lines) + "\n")
    pattern = read_pattern(path, wavelength=KA1)
    np.testing.assert_allclose(pattern.two_theta, np.round(TWO_THETA, 4), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, COUNTS)
    assert pattern.ka1 == KA1 and pattern.wavelength_source == "user"
    plain = tmp_path / "plain.XYE"
    plain.write_text("\n".join(lines[2:]))
    np.testing.assert_array_equal(read_pattern(plain).intensity, COUNTS)


def test_a_lab_format_goes_through_preprocessing(tmp_path):
    path = tmp_path / "scan.raw"
    path.write_bytes(raw_v4())
    prepared = prepare_pattern(read_pattern(path), ModelGrid(10.0, 70.0, 1501, 1.54184))
    assert prepared.x.shape == (1501,) and prepared.x.min() == 0 and prepared.x.max() == 1
    assert prepared.file_wavelength == pytest.approx(KA_MEAN, abs=1e-5)  # weighted mean


# --- bad files: one MeasuredPatternError naming the file, the problem and what is accepted ----


def _cut(data: bytes, keep: int) -> bytes:
    return data[:keep]


BAD_FILES = [
    (
        "magic.raw",
        lambda: b"PK\x03\x04" + bytes(900),
        "does not start with a Bruker RAW magic",
        "RAW1.01",
    ),
    ("old.raw", lambda: b"RAW2" + bytes(900), "Bruker RAW version 2", "RAW4.00"),
    ("short3.raw", lambda: raw_v3()[:-40], "counts and positions do not match", "RAW1.01"),
    (
        "head.raw",
        lambda: raw_v3()[:500],
        "the file ends inside the 712-byte file header",
        "RAW1.01",
    ),
    ("short4.raw", lambda: raw_v4()[:-4], "counts and positions do not match", "RAW4.00"),
    (
        "norange.raw",
        lambda: raw_v4()[: 61 + 52 + 120],
        "no measurement range (missing data block)",
        "RAW4.00",
    ),
    (
        "omega.raw",
        lambda: raw_v4(scan_type="Rocking Curve"),
        "'Rocking Curve' scan, not a 2theta",
        "Locked Coupled",
    ),
    ("cut.brml", lambda: brml()[:3000], "not a readable zip archive", "Bruker BRML"),
    ("empty.brml", lambda: brml(rows=0), "has no <Datum> rows (missing data block)", "Bruker BRML"),
    (
        "uneven.brml",
        lambda: brml(varying_slit=True, rows=N - 5),
        "(3001 positions) but there are 2996 <Datum> rows",
        "one Datum row per scan position",
    ),
    (
        "count.ras",
        lambda: ras(count=N + 1).encode(),
        "MEAS_DATA_COUNT declares 3002 points but 3001",
        "as many",
    ),
    ("cut.ras", lambda: ras().encode()[:5000], "no *RAS_INT_END (truncated file)", "RAS_INT_START"),
    ("notras.ras", lambda: b"10 1\n11 2\n", "no *RAS_HEADER_START line", "Rigaku RAS"),
    (
        "phi.ras",
        lambda: ras(axis="Phi").encode(),
        "the scan axis is 'Phi', not 2theta",
        "Rigaku RAS",
    ),
    ("cut.rasx", lambda: rasx()[:-30], "not a readable zip archive", "Rigaku RASX"),
    ("noprofile.rasx", lambda: rasx(profile=False), "no Data*/Profile*.txt member", "Rigaku RASX"),
    (
        "omega.rasx",
        lambda: rasx(axis="Omega"),
        "the scan axis is 'Omega', not 2theta",
        "Rigaku RASX",
    ),
    ("open.xye", lambda: b"/* no end\n10 1 1\n", "'/*' comment block has no closing", "GSAS"),
]


@pytest.mark.parametrize(
    ("name", "make", "what", "accepted"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_each_bad_lab_file_gets_one_clear_error(tmp_path, name, make, what, accepted):
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(MeasuredPatternError) as info:
        read_pattern(path)
    message = str(info.value)
    assert message.startswith(str(path)) and what in message, message
    assert accepted in message.split("accepted:", 1)[1], message


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("t.raw", raw_v3),
        ("t4.raw", raw_v4),
        ("t.brml", brml),
        ("t.rasx", rasx),
        ("t.ras", lambda: ras().encode()),
    ],
)
def test_every_truncation_is_a_measured_pattern_error(tmp_path, name, make):
    """A file cut anywhere fails with MeasuredPatternError naming it, never another exception
    (a RAS file cut after its data block's end marker is complete, so it is cut before)."""
    data = make()
    path = tmp_path / name
    end = data.index(b"*RAS_INT_END") if name.endswith(".ras") else len(data) - 1
    for keep in np.linspace(0, end, 40).astype(int):
        path.write_bytes(data[:keep])
        with pytest.raises(MeasuredPatternError, match=name):
            read_pattern(path)


def test_accepted_extensions_name_the_lab_formats(tmp_path):
    path = tmp_path / "scan.spc"
    path.write_text("x")
    with pytest.raises(MeasuredPatternError) as info:
        read_pattern(path)
    assert ".xye, .brml, .raw, .ras, .rasx" in str(info.value)
    assert ACCEPTED == ".xy, .csv, .txt, .dat, .xrdml, .xye, .brml, .raw, .ras, .rasx"


def test_a_batch_goes_on_past_bad_lab_files(tmp_path):
    from xrdpipe.stages.predict import predict_files

    good = tmp_path / "good.raw"
    good.write_bytes(raw_v3())
    bad = tmp_path / "bad.rasx"
    bad.write_bytes(rasx()[:100])
    also_good = tmp_path / "good.ras"
    also_good.write_bytes(ras().encode())
    results, failures = predict_files([good, bad, also_good], [])
    assert [Path(r.path).name for r in results] == ["good.raw", "good.ras"]
    assert list(failures) == [str(bad)] and "not a readable zip archive" in failures[str(bad)]


XRDML_SLIT = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <xrdMeasurement measurementType="Scan">
    <usedWavelength><kAlpha1 unit="Angstrom">1.5405980</kAlpha1></usedWavelength>
    <incidentBeamPath>
      <radius unit="mm">240.00</radius>
      <divergenceSlit xsi:type="{slit}" id="1" name="slit">
        <distanceToSample unit="mm">100.00</distanceToSample>
        {extra}
      </divergenceSlit>
    </incidentBeamPath>
    <scan><dataPoints>
      <positions axis="2Theta" unit="deg"><startPosition>10</startPosition>
      <endPosition>29</endPosition></positions>
      <intensities unit="counts">{counts}</intensities>
    </dataPoints></scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


@pytest.mark.parametrize(
    ("slit", "extra", "kind", "note"),
    [
        ("fixedDivergenceSlitType", '<angle unit="deg">0.5</angle>', FIXED_SLIT, "angle 0.5 deg"),
        (
            "programmableDivergenceSlitType",
            '<irradiatedLength unit="mm">10</irradiatedLength>',
            AUTOMATIC_SLIT,
            "irradiatedLength 10 mm",
        ),
        ("programmableDivergenceSlitType", "", None, "mode not stated"),
    ],
)
def test_xrdml_divergence_slit_kind(tmp_path, slit, extra, kind, note):
    path = tmp_path / "slit.xrdml"
    path.write_text(XRDML_SLIT.format(slit=slit, extra=extra, counts=" ".join(["5"] * 20)))
    pattern = read_pattern(path)
    assert pattern.divergence_slit == kind
    assert any(n.startswith("divergence slit: ") and note in n for n in pattern.notes)
    np.testing.assert_array_equal(pattern.two_theta, np.arange(10.0, 30.0))
