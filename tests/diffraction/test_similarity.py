"""Pattern similarity of phase pairs: the measurements behind the 0.9 threshold."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Structure

from tests.support import CIF_DIR
from xrdpipe.diffraction.similarity import (
    SIMILARITY_THRESHOLD,
    log_d_profiles,
    profile_similarity,
    similar_phases,
)

CU_KA1 = 1.540593


def similarity(first: str, second: str) -> float:
    structures = [Structure.from_file(CIF_DIR / f"{i}.cif") for i in (first, second)]
    pairs = similar_phases([first, second], structures, CU_KA1, (10.0, 80.0), threshold=1e-6)
    return pairs[0].similarity if pairs else 0.0


@pytest.mark.parametrize(
    ("first", "second", "measured"),
    [
        ("9005952", "9005953", 0.999),  # NiAl2O4 refined twice (a 8.0452 / 8.046)
        ("9008589", "9011108", 0.999),  # alpha-Mn twice (a 8.894 / 8.911: a 0.2 % scaling)
        ("2240655", "2240656", 0.976),  # Na2MoO4 / Na2WO4, isostructural, a within 0.2 %
        ("2105798", "2105799", 0.605),  # KLaS2 / KPrS2, isostructural, a 1.7 % apart
        ("2105798", "2105803", 0.150),  # KLaS2 / KYS2, isostructural, a 6 % apart
        ("1009031", "2100862", 0.083),  # PdO / BaTiO3, unrelated
    ],
)
def test_measured_pairs_fall_on_their_side_of_the_threshold(first, second, measured):
    value = similarity(first, second)
    assert value == pytest.approx(measured, abs=2e-3)
    assert (value >= SIMILARITY_THRESHOLD) == (measured > 0.9)


def test_a_shift_within_the_search_is_found_and_one_beyond_is_not():
    d = np.array([3.0, 2.1, 1.7, 1.3])
    i = np.array([100.0, 40.0, 60.0, 20.0])
    profiles = log_d_profiles([d, d * 1.015, d * 1.04], [i, i, i], (1.0, 4.0))
    sim, scale = profile_similarity(profiles)
    assert sim[0, 1] == pytest.approx(1.0, abs=2e-3)  # 1.5 % apart: within the 2 % search
    assert scale[0, 1] == pytest.approx(1.015, abs=5e-4)  # first's d times 1.015 -> second
    assert sim[0, 2] < 0.05  # 4 % apart: beyond it
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-12)
