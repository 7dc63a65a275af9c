"""Measured powder patterns: readers and the preprocessing onto a model's input grid.

Readers: two-column ``.xy``/``.csv``/``.txt``/``.dat``, GSAS ``.xye``, PANalytical ``.xrdml``,
Bruker ``.brml`` and ``.raw`` (versions 3 and 4), Rigaku ``.ras`` and ``.rasx``.

Pure functions over numpy arrays; the only IO is reading the file in :func:`read_pattern`.
Every failure is a :class:`~xrdpipe.errors.MeasuredPatternError` whose message names the file,
what is wrong (with the value) and what is accepted.

Modules: :mod:`~xrdpipe.readers.text` (``.xy``/``.csv``/``.txt``/``.dat``/``.xye``),
:mod:`~xrdpipe.readers.xrdml`, :mod:`~xrdpipe.readers.brml`, :mod:`~xrdpipe.readers.bruker_raw`,
:mod:`~xrdpipe.readers.rigaku` (``.ras``, ``.rasx``), :mod:`~xrdpipe.readers.base`
(:class:`MeasuredPattern` and the shared helpers), :mod:`~xrdpipe.readers.pattern`
(:func:`check_pattern`, :func:`read_pattern`), :mod:`~xrdpipe.readers.prepare` (the
preprocessing, :func:`prepare_pattern`, and its steps) and :mod:`~xrdpipe.readers.instrument`
(the instrument a scan was measured with, as a profile: ``--instrument SCAN``).
"""

from xrdpipe.readers.base import AUTOMATIC_SLIT, FIXED_SLIT, MeasuredPattern
from xrdpipe.readers.brml import BRML_EXTENSIONS, parse_brml
from xrdpipe.readers.bruker_raw import RAW_EXTENSIONS, parse_bruker_raw
from xrdpipe.readers.pattern import (
    ACCEPTED,
    CU_KA1,
    EXTENSIONS,
    MIN_POINTS,
    check_pattern,
    read_pattern,
)
from xrdpipe.readers.prepare import (
    BACKGROUND_WINDOW_DEG,
    COVERAGE_TOLERANCE_DEG,
    MIN_PARTIAL_COVERAGE,
    TINY,
    WAVELENGTH_RTOL,
    ModelGrid,
    PreparedPattern,
    bragg_convert,
    normalize_min_max,
    prepare_pattern,
    rolling_minimum_background,
)
from xrdpipe.readers.rigaku import (
    RAS_EXTENSIONS,
    RASX_EXTENSIONS,
    RIGAKU_KA2_RATIO,
    parse_ras,
    parse_rasx,
)
from xrdpipe.readers.text import TEXT_EXTENSIONS, XYE_EXTENSIONS, parse_xy, parse_xye
from xrdpipe.readers.xrdml import XML_EXTENSIONS, parse_xrdml

__all__ = [
    "ACCEPTED",
    "AUTOMATIC_SLIT",
    "BRML_EXTENSIONS",
    "EXTENSIONS",
    "FIXED_SLIT",
    "RAS_EXTENSIONS",
    "RASX_EXTENSIONS",
    "RAW_EXTENSIONS",
    "RIGAKU_KA2_RATIO",
    "XYE_EXTENSIONS",
    "parse_brml",
    "parse_bruker_raw",
    "parse_ras",
    "parse_rasx",
    "parse_xye",
    "BACKGROUND_WINDOW_DEG",
    "COVERAGE_TOLERANCE_DEG",
    "CU_KA1",
    "MIN_PARTIAL_COVERAGE",
    "MIN_POINTS",
    "TEXT_EXTENSIONS",
    "TINY",
    "WAVELENGTH_RTOL",
    "XML_EXTENSIONS",
    "MeasuredPattern",
    "ModelGrid",
    "PreparedPattern",
    "bragg_convert",
    "check_pattern",
    "normalize_min_max",
    "parse_xrdml",
    "parse_xy",
    "prepare_pattern",
    "read_pattern",
    "rolling_minimum_background",
]
