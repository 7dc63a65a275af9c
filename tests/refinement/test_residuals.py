"""Residual peaks: a planted peak no phase has is flagged; a good fit flags nothing."""

from __future__ import annotations

import pytest

from tests.refinement.engine_scan import Planted, engine_scan
from xrdpipe.refinement import RefinementOptions, refine
from xrdpipe.refinement.residuals import residual_peaks

OPTIONS = RefinementOptions(background_order=3)


def fit(phases, structures, extra_peak=None, seed=0):
    planted = Planted(
        weight_fractions=[0.3, 0.4, 0.3],
        zero_shift_deg=0.03,
        sample_displacement_mm=0.08,
        seed=seed,
        extra_peak=extra_peak,
    )
    return refine(*engine_scan(structures, planted), phases, options=OPTIONS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_good_fit_flags_nothing(seed, mixture_phases, mixture_structures):
    assert residual_peaks(fit(mixture_phases, mixture_structures, seed=seed)) == []


def test_a_planted_peak_is_flagged(mixture_phases, mixture_structures):
    # 2 % of the strongest peak at 44.0 degrees, where none of Si, VO2, brucite has a line
    result = fit(mixture_phases, mixture_structures, extra_peak=(44.0, 0.02, 0.1))
    peaks = residual_peaks(result)
    assert len(peaks) == 1
    (peak,) = peaks
    assert peak.two_theta == pytest.approx(44.0, abs=0.03)
    assert peak.relative_height == pytest.approx(0.02, rel=0.3)
    assert peak.significance > 10
    assert not peak.explained
    # a weaker one (0.3 %, ~2 sigma a point) stays below the 5 sigma threshold
    weak = fit(mixture_phases, mixture_structures, extra_peak=(44.0, 0.003, 0.1))
    assert residual_peaks(weak) == []
    with pytest.raises(ValueError, match="threshold_sigma"):
        residual_peaks(result, threshold_sigma=0)


def test_a_broad_hump_is_no_peak(mixture_phases, mixture_structures):
    """A background hump the Chebyshev does not follow (FWHM 8 degrees) flags nothing;
    the planted 2 % peak on top of it is still found at its height."""
    from dataclasses import replace

    import numpy as np

    result = fit(mixture_phases, mixture_structures, extra_peak=(44.0, 0.02, 0.1))
    strongest = float((result.calculated - result.background).max())
    hump = 0.03 * strongest * np.exp(-0.5 * ((result.two_theta - 30.0) / 3.4) ** 2)
    humped = replace(result, observed=result.observed + hump)
    peaks = residual_peaks(humped)
    assert [round(p.two_theta) for p in peaks] == [44]
    assert peaks[0].relative_height == pytest.approx(0.02, rel=0.3)
