"""The mixture plot of the CLI: peaks drawn where the store's sticks are."""

import subprocess
import sys

import numpy as np

from xrdpipe.patterns.config import MixtureConfig, ProfileConfig
from xrdpipe.patterns.datasets import StorePeaks
from xrdpipe.patterns.mixtures import PeakArrays
from xrdpipe.patterns.plots import draw_examples, plot_mixtures
from xrdpipe.patterns.render import two_theta_grid


def _store_peaks() -> StorePeaks:
    import pandas as pd
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.core import Lattice, Structure

    calc = XRDCalculator()
    structures = [
        Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        Structure.from_spacegroup(
            "Pm-3m", Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
        Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.05), ["Al"], [[0, 0, 0]]),
    ]
    patterns = [calc.get_pattern(s, two_theta_range=(10, 80)) for s in structures]
    n_peaks = max(len(p.x) for p in patterns)
    tt = np.zeros((3, 2, n_peaks))
    inten = np.zeros((3, 2, n_peaks))
    mask = np.zeros((3, 2, n_peaks), dtype=bool)
    for m, p in enumerate(patterns):
        tt[m, :, : len(p.x)] = p.x
        inten[m, :, : len(p.x)] = p.y
        mask[m, :, : len(p.x)] = True
    materials = pd.DataFrame({"cod_id": ["1", "2", "3"], "formula": ["NaCl", "CsCl", "Al"]})
    return StorePeaks(
        PeakArrays.from_arrays(tt, inten, mask), materials, np.arange(2), 1.54184, "x"
    )


def test_plotted_peaks_match_the_sticks():
    profile = ProfileConfig(n_points=7001)
    examples = draw_examples(
        _store_peaks(), MixtureConfig(n_materials=3, max_phases=3), profile, n=4, seed=5
    )
    assert any(len(e.labels) > 1 for e in examples)
    fig = plot_mixtures(examples, profile)
    grid = two_theta_grid(profile).numpy()
    step = grid[1] - grid[0]
    checked = 0
    for ax_row, ex in zip(fig.axes[1::2], examples, strict=True):
        sticks = [c for c in ax_row.collections if (c.get_gid() or "").startswith("sticks-")]
        assert len(sticks) == len(ex.labels)
        for collection, (tt, inten), profile_j in zip(sticks, ex.sticks, ex.phases, strict=True):
            plotted_x = np.array([seg[0, 0] for seg in collection.get_segments()])
            np.testing.assert_allclose(np.sort(plotted_x), np.sort(tt), atol=1e-9)
            # the strongest stick sits on the phase profile's maximum (within a grid step)
            strongest = tt[np.argmax(inten)]
            assert abs(grid[np.argmax(profile_j)] - strongest) <= step
            checked += 1
    assert checked >= 5
    # each mixture's strongest peak is one of its phases' sticks
    for ex in examples:
        all_tt = np.concatenate([tt for tt, _ in ex.sticks])
        assert np.min(np.abs(all_tt - grid[np.argmax(ex.pattern)])) <= 2 * step


def test_plot_command_names_the_missing_store(tmp_path):
    """The CLI on a real store is run in tests/flows/test_simulate.py; here: no store."""
    proc = subprocess.run(
        [sys.executable, "-m", "xrdpipe.cli", "plot-mixtures", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "patterns.zarr" in proc.stderr + proc.stdout
