"""Measured powder patterns: readers and the preprocessing onto a model's input grid.

Readers: two-column ``.xy``/``.csv``/``.txt``/``.dat`` and PANalytical ``.xrdml``.

Pure functions over numpy arrays; the only IO is reading the file in :func:`read_pattern`.
Every failure is a :class:`~xrdpipe.errors.MeasuredPatternError` whose message names the file,
what is wrong (with the value) and what is accepted.

Modules: :mod:`~xrdpipe.readers.text` (``.xy``/``.csv``/``.txt``/``.dat``),
:mod:`~xrdpipe.readers.xrdml`, :mod:`~xrdpipe.readers.pattern` (:class:`MeasuredPattern`,
:func:`check_pattern`, :func:`read_pattern`) and :mod:`~xrdpipe.readers.prepare` (the
preprocessing, :func:`prepare_pattern`, and its steps).
"""

from xrdpipe.readers.base import MeasuredPattern
from xrdpipe.readers.pattern import ACCEPTED, CU_KA1, MIN_POINTS, check_pattern, read_pattern
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
from xrdpipe.readers.text import TEXT_EXTENSIONS, parse_xy
from xrdpipe.readers.xrdml import XML_EXTENSIONS, parse_xrdml

__all__ = [
    "ACCEPTED",
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
