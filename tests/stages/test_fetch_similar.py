"""The fetch stage warns about a phase set's pairs with indistinguishable patterns."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest

from tests.support import CIF_DIR
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.config.catalog import Filters
from xrdpipe.diffraction.similarity import IndistinguishablePhasesWarning
from xrdpipe.stages.fetch import SIMILAR_PHASES_FILE, fetch_subset


def test_a_planted_pair_is_warned_about_and_recorded_a_distinct_pair_is_not(tmp_path):
    phases = tmp_path / "phases"
    phases.mkdir()
    shutil.copy(CIF_DIR / "1009031.cif", phases / "PdO (tetragonal).cif")
    shutil.copy(CIF_DIR / "1009031.cif", phases / "palladium oxide.cif")  # the same CIF again
    shutil.copy(CIF_DIR / "2100862.cif", phases / "BaTiO3.cif")
    subset = SubsetConfig(source="phases", phases=phases, filters=Filters(deduplicate=False))
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.warns(IndistinguishablePhasesWarning) as caught:
        report = fetch_subset("lab", subset, settings)
    messages = [str(w.message) for w in caught if w.category is IndistinguishablePhasesWarning]
    assert len(messages) == 1
    assert "'PdO (tetragonal)' and 'palladium oxide'" in messages[0]
    assert "1.000 alike" in messages[0]
    assert [(p["first"], p["second"]) for p in report.similar_phases] == [
        ("PdO (tetragonal)", "palladium oxide")
    ]
    assert report.similar_phases[0]["similarity"] == pytest.approx(1.0, abs=1e-9)
    assert "indistinguishable? 'PdO (tetragonal)' and 'palladium oxide'" in report.summary()
    record = json.loads((settings.subset_dir("lab") / SIMILAR_PHASES_FILE).read_text())
    assert record["threshold"] == 0.9 and len(record["pairs"]) == 1

    (phases / "palladium oxide.cif").unlink()  # PdO and BaTiO3 alone: nothing to say
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndistinguishablePhasesWarning)
        report = fetch_subset("lab", subset, settings)
    assert report.similar_phases == []
    record = json.loads((settings.subset_dir("lab") / SIMILAR_PHASES_FILE).read_text())
    assert record["pairs"] == []  # checked, nothing found
