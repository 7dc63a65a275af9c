"""Whole-pattern refinement (Rietveld-style, numpy/scipy): scales, weight fractions, cells.

See ``docs/refinement.md``. :func:`refine` fits a scan with candidate phases
(:func:`phase_from_structure`); :func:`polish` starts from a given answer; :func:`calibrate`
fits a standard and returns the instrument; :func:`residual_peaks` flags what no phase explains.
"""

from xrdpipe.refinement.fit import refine
from xrdpipe.refinement.model import LineSettings
from xrdpipe.refinement.parameters import RefinementOptions
from xrdpipe.refinement.phases import (
    LatticeModel,
    RefinementPhase,
    lattice_model,
    phase_from_structure,
)
from xrdpipe.refinement.polish import PolishResult, polish
from xrdpipe.refinement.results import PhaseResult, RefinementResult
from xrdpipe.refinement.solution import weight_fractions

__all__ = [
    "LatticeModel",
    "LineSettings",
    "PhaseResult",
    "PolishResult",
    "RefinementOptions",
    "RefinementPhase",
    "RefinementResult",
    "lattice_model",
    "phase_from_structure",
    "polish",
    "refine",
    "weight_fractions",
]
