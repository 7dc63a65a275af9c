"""``xrdpipe predict``: readers, Bragg resampling, bad files, and predictions with models
trained on a tiny real store and registered in a real MLflow SQLite store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from tests.support import (
    TINY_CLASSIFIER_PRESET,
    TINY_PHASE_PRESET,
    TINY_SUBSET,
    build_tiny_store,
)
from xrdpipe import tracking
from xrdpipe.errors import MeasuredPatternError
from xrdpipe.indexing import OUTCOMES
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.patterns.render import render_clean, render_profiles
from xrdpipe.readers import (
    ModelGrid,
    bragg_convert,
    parse_xrdml,
    prepare_pattern,
    read_pattern,
)
from xrdpipe.stages.train import train_task

KA1, KA2, RATIO = 1.5405980, 1.5444260, 0.5
MO_KA1 = 0.709300
CU_MEAN = 1.54184  # pymatgen CuKa, the tiny store's wavelength
MODEL_GRID = ModelGrid(10.0, 80.0, 1501, CU_MEAN)  # TINY_SUBSET's profile
FILE_PROFILE = ProfileConfig(
    two_theta_min=5.0,
    two_theta_max=90.0,
    n_points=4251,  # 0.02 deg steps, a typical lab scan
    ka_doublet=True,
    ka1=KA1,
    ka2=KA2,
    ka2_ratio=RATIO,
    noise_fraction=(0.0, 0.0),
    background_amplitude=(0.05, 0.1),
    crystallite_size_nm=(40.0, 60.0),
)

# --- file writers (real-shaped files) ------------------------------------------------------

XRDML = """<?xml version="1.0" encoding="UTF-8"?>
<xrdMeasurements xmlns="http://www.xrdml.com/XRDMeasurement/1.5"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xsi:schemaLocation="http://www.xrdml.com/XRDMeasurement/1.5 \
http://www.xrdml.com/XRDMeasurement/1.5/XRDMeasurement.xsd" status="Completed">
  <comment>
    <entry>Configuration=Reflection-transmission spinner, Owner=User-1</entry>
    <entry>Goniometer=PW3050/60 (Theta/Theta); Minimum step size 2Theta:0.0001</entry>
  </comment>
  <sample type="To be analyzed">
    <id>{name}</id>
    <name>{name}</name>
    <preparedBy>xrdpipe tests</preparedBy>
  </sample>
  <xrdMeasurement measurementType="Scan" status="Completed" sampleMode="Reflection">
    <comment><entry>simulated with xrdpipe's renderer</entry></comment>
    <usedWavelength intended="K-Alpha 1">
      <kAlpha1 unit="Angstrom">1.5405980</kAlpha1>
      <kAlpha2 unit="Angstrom">1.5444260</kAlpha2>
      <kBeta unit="Angstrom">1.3922500</kBeta>
      <ratioKAlpha2KAlpha1>0.5000</ratioKAlpha2KAlpha1>
    </usedWavelength>
    <incidentBeamPath>
      <radiationPath>
        <radius unit="mm">240.00</radius>
      </radiationPath>
      <xRayTube id="1" name="Cu LFF">
        <tension unit="kV">45</tension>
        <current unit="mA">40</current>
        <anodeMaterial>Cu</anodeMaterial>
      </xRayTube>
    </incidentBeamPath>
    <scan appendNumber="0" mode="Continuous" scanAxis="Gonio" status="Completed">
      <header>
        <startTimeStamp>2024-05-02T10:11:12+02:00</startTimeStamp>
        <endTimeStamp>2024-05-02T10:41:12+02:00</endTimeStamp>
        <author><name>User-1</name></author>
        <source>
          <applicationSoftware version="4.9">Data Collector</applicationSoftware>
        </source>
      </header>
      <dataPoints>
        {positions}
        <positions axis="Omega" unit="deg">
          <startPosition>2.5000</startPosition>
          <endPosition>45.0000</endPosition>
        </positions>
        <commonCountingTime unit="seconds">{seconds}</commonCountingTime>
        <{tag} unit="counts">{counts}</{tag}>
      </dataPoints>
    </scan>
  </xrdMeasurement>
</xrdMeasurements>
"""


def write_xrdml(
    path: Path,
    two_theta: np.ndarray,
    counts: np.ndarray,
    *,
    seconds: float = 0.5,
    tag: str = "intensities",
    listed: bool = False,
) -> Path:
    if listed:
        positions = (
            '<positions axis="2Theta" unit="deg"><listPositions>'
            + " ".join(f"{v:.4f}" for v in two_theta)
            + "</listPositions></positions>"
        )
    else:
        positions = (
            f'<positions axis="2Theta" unit="deg"><startPosition>{two_theta[0]:.4f}'
            f"</startPosition><endPosition>{two_theta[-1]:.4f}</endPosition></positions>"
        )
    text = XRDML.format(
        name=path.stem,
        positions=positions,
        seconds=f"{seconds:.2f}",
        tag=tag,
        counts=" ".join(str(int(c)) for c in counts),
    )
    path.write_text(text)
    return path


def write_xy(path: Path, two_theta: np.ndarray, y: np.ndarray, sep: str = " ") -> Path:
    lines = ["# simulated by xrdpipe tests", "# wavelength: see the test", f"2theta{sep}counts"]
    lines += [f"{a:.4f}{sep}{b:.3f}" for a, b in zip(two_theta, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def simulate_counts(
    peaks, materials: list[int], fractions: list[float], strain: int, seed: int
) -> np.ndarray:
    """A measured-like Cu K-alpha1/2 pattern (counts) of a mixture, rendered by xrdpipe.

    Each phase's max-100 peak list times its fraction (the volume mode of the training
    mixtures), K-alpha doublet from the d-spacings, random shape, a background, Poisson noise
    at ~20,000 counts.
    """
    p = peaks.peaks
    parts = [(m, f) for m, f in zip(materials, fractions, strict=True) if f > 0]
    tt = torch.cat([p.two_theta[m, strain] for m, _ in parts])[None]
    inten = torch.cat([p.intensity[m, strain] * f for m, f in parts])[None]
    mask = torch.cat([p.peak_mask[m, strain] for m, _ in parts])[None]
    dsp = torch.cat([p.d_spacing[m, strain] for m, _ in parts])[None]
    phase = torch.cat(
        [
            torch.full_like(p.two_theta[m, strain], k, dtype=torch.long)
            for k, (m, _) in enumerate(parts)
        ]
    )[None]
    gen = torch.Generator().manual_seed(seed)
    y = render_profiles(
        tt, inten, mask, FILE_PROFILE, gen, "cpu", d_spacing=dsp, phase_index=phase
    )[0].numpy()
    rng = np.random.default_rng(seed)
    return rng.poisson(200 + 20_000 * y).astype(np.float64)


def render_direct(peaks, fractions: np.ndarray, strain: int, seed: int) -> np.ndarray:
    """The same mixture as a training input: single peaks on the model's grid, noise and
    background of the training ranges (what the model sees without any file in between)."""
    p = peaks.peaks
    parts = [(m, f) for m, f in enumerate(fractions) if f > 0]
    tt = torch.cat([p.two_theta[m, strain] for m, _ in parts])[None]
    inten = torch.cat([p.intensity[m, strain] * f for m, f in parts])[None]
    mask = torch.cat([p.peak_mask[m, strain] for m, _ in parts])[None]
    phase = torch.cat(
        [
            torch.full_like(p.two_theta[m, strain], k, dtype=torch.long)
            for k, (m, _) in enumerate(parts)
        ]
    )[None]
    gen = torch.Generator().manual_seed(seed)
    y = render_profiles(tt, inten, mask, TINY_SUBSET.profile, gen, "cpu", phase_index=phase)
    return y.numpy().astype(np.float32)


def file_grid() -> np.ndarray:
    return np.linspace(
        FILE_PROFILE.two_theta_min, FILE_PROFILE.two_theta_max, FILE_PROFILE.n_points
    )


# --- readers ------------------------------------------------------------------------------


def test_xy_reader_accepts_comments_header_and_separators(tmp_path):
    tt = np.linspace(10, 80, 50)
    y = 100 + tt
    for name, sep in (("a.xy", " "), ("b.csv", ","), ("c.txt", "\t"), ("d.dat", "  ")):
        pattern = read_pattern(write_xy(tmp_path / name, tt, y, sep), wavelength=1.5406)
        np.testing.assert_allclose(pattern.two_theta, tt, atol=1e-4)
        np.testing.assert_allclose(pattern.intensity, y, atol=1e-3)
        assert pattern.ka1 == 1.5406 and pattern.wavelength_source == "user"
    # semicolons with decimal commas (European CSV exports), a trailing comment, descending
    lines = ["Angle;Intensity"] + [
        f"{a:.3f};{b:.1f}".replace(".", ",") for a, b in zip(tt, y, strict=True)
    ]
    lines[3] += "  # a remark"
    (tmp_path / "e.csv").write_text("\n".join(lines[:1] + lines[1:][::-1]))
    pattern = read_pattern(tmp_path / "e.csv")
    np.testing.assert_allclose(pattern.two_theta, tt, atol=1e-3)
    assert pattern.ka1 is None and "descending scan reversed" in pattern.notes


def test_xrdml_reader_wavelengths_positions_and_counting_time(tmp_path):
    tt = np.linspace(5.0, 90.0, 4251)
    counts = np.arange(4251) % 97 + 10.0
    pattern = read_pattern(write_xrdml(tmp_path / "scan.xrdml", tt, counts, seconds=0.5))
    assert (pattern.ka1, pattern.ka2, pattern.ka2_ratio) == (KA1, KA2, RATIO)
    assert pattern.wavelength() == pytest.approx((KA1 + 0.5 * KA2) / 1.5)
    assert pattern.wavelength(doublet_model=True) == KA1
    np.testing.assert_allclose(pattern.two_theta, tt, atol=1e-9)
    np.testing.assert_allclose(pattern.intensity, counts / 0.5)  # counts per second
    assert any("counting time 0.5 s" in n for n in pattern.notes)
    listed = read_pattern(
        write_xrdml(tmp_path / "list.xrdml", tt, counts, seconds=0.0, tag="counts", listed=True)
    )
    np.testing.assert_allclose(listed.two_theta, np.round(tt, 4))
    np.testing.assert_allclose(listed.intensity, counts)


# --- bad files: each message names the file, what is wrong and what is accepted --------------


def _grid_ok_pattern() -> tuple[np.ndarray, np.ndarray]:
    tt = np.linspace(10, 80, 200)
    return tt, 100 + np.sin(tt)


@pytest.mark.parametrize(
    ("name", "content", "what", "accepted"),
    [
        (
            "scan.spc",
            "10 1\n",
            "extension '.spc' is not supported",
            ".xy, .csv, .txt, .dat, .xrdml, .xye, .brml, .raw, .ras, .rasx",
        ),
        ("short.xy", "10 1\n11 2\n12 3\n", "only 3 data points", "at least 16 points"),
        ("nan.xy", "NAN", "NaN or infinite intensity value(s), first at point 5", "finite"),
        ("back.xy", "BACK", "not strictly increasing: point 7", "strictly increasing"),
        ("one.xy", "10 1\n11\n", "line 2 has 1 column(s)", "two_theta intensity"),
        ("words.csv", "2theta,I\n10,1\nend of data,x\n", "line 3 is not numeric", "header"),
        ("empty.txt", "# only comments\n", "no data lines found", "two_theta intensity"),
    ],
)
def test_bad_text_files_are_named_with_the_problem_and_what_is_accepted(
    tmp_path, name, content, what, accepted
):
    tt, y = _grid_ok_pattern()
    lines = [f"{a} {b}" for a, b in zip(tt, y, strict=True)]
    if content == "NAN":
        lines[4] = f"{tt[4]} nan"
        content = "\n".join(lines)
    elif content == "BACK":
        lines[6] = f"{tt[4]} 5"
        content = "\n".join(lines)
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(MeasuredPatternError) as info:
        read_pattern(path)
    message = str(info.value)
    assert name in message and what in message and "accepted: " in message, message
    assert accepted in message.split("accepted:")[1], message


def test_truncated_and_malformed_xrdml_are_refused(tmp_path):
    tt = np.linspace(5.0, 90.0, 300)
    good = write_xrdml(tmp_path / "good.xrdml", tt, np.ones(300)).read_text()
    (tmp_path / "cut.xrdml").write_text(good[: len(good) // 2])
    with pytest.raises(MeasuredPatternError) as info:
        read_pattern(tmp_path / "cut.xrdml")
    message = str(info.value)
    assert "cut.xrdml" in message and "malformed or truncated XML at line" in message
    assert "accepted: PANalytical XRDML 1.x with a 2Theta scan" in message
    no_axis = good.replace('axis="2Theta"', 'axis="Chi"')
    with pytest.raises(MeasuredPatternError, match=r"noaxis.xrdml: no <positions axis=\"2Theta\">"):
        parse_xrdml(no_axis, "noaxis.xrdml")
    uneven = good.replace("<endPosition>90.0000", "<endPosition>90.0000").replace(
        " 1 1 1</intensities>", "</intensities>"
    )
    uneven_listed = write_xrdml(tmp_path / "l.xrdml", tt, np.ones(300), listed=True).read_text()
    uneven_listed = uneven_listed.replace(" 1 1 1</intensities>", "</intensities>")
    with pytest.raises(MeasuredPatternError, match="300 2Theta positions but 297 intensities"):
        parse_xrdml(uneven_listed, "l.xrdml")
    assert len(parse_xrdml(uneven, "u.xrdml").two_theta) == 297  # start/end: spread evenly


def test_coverage_errors_state_both_ranges_and_partial_is_opt_in(tmp_path):
    tt = np.linspace(20, 50, 400)
    path = write_xy(tmp_path / "narrow.xy", tt, 100 + np.cos(tt))
    pattern = read_pattern(path)
    with pytest.raises(MeasuredPatternError) as info:
        prepare_pattern(pattern, MODEL_GRID)
    message = str(info.value)
    assert "narrow.xy" in message and "covers 20.00-50.00 deg" in message
    assert "the model needs 10-80 deg" in message and "--partial" in message
    with pytest.raises(MeasuredPatternError, match="only 44% of the grid"):
        prepare_pattern(pattern, MODEL_GRID, allow_partial=True)
    wider = read_pattern(write_xy(tmp_path / "w.xy", np.linspace(30, 80, 400), np.ones(400)))
    prepared = prepare_pattern(wider, MODEL_GRID, allow_partial=True)
    assert prepared.coverage == pytest.approx(50.25 / 70, abs=0.01)
    assert any("partial coverage" in n for n in prepared.notes)
    assert np.all(prepared.x[~prepared.covered] == 0)
    # within the tolerance (a scan ending a step short) is a full pattern
    short = read_pattern(write_xy(tmp_path / "s.xy", np.linspace(10.1, 79.9, 400), np.ones(400)))
    assert prepare_pattern(short, MODEL_GRID).covered.all()


def test_background_subtraction_and_normalisation():
    grid = MODEL_GRID.two_theta
    from xrdpipe.readers import MeasuredPattern

    peak = np.exp(-0.5 * ((grid - 40) / 0.1) ** 2)
    y = 1000 * peak + 300 * np.exp(-(grid - 10) / 20) + 50
    pattern = MeasuredPattern("bg.xy", grid, y, CU_MEAN)
    plain = prepare_pattern(pattern, MODEL_GRID)
    cleaned = prepare_pattern(pattern, MODEL_GRID, background=True)
    assert plain.x.min() == 0 and plain.x.max() == pytest.approx(1)
    assert plain.x[0] > 0.2  # background left in
    # the background is gone (beyond half a window from the edges, where the opening lags)
    assert cleaned.x.max() == pytest.approx(1) and cleaned.x[0] < 0.05
    inner = grid > 12.5
    np.testing.assert_allclose(cleaned.x[inner], (peak / peak.max())[inner], atol=0.01)


# --- Bragg resampling -----------------------------------------------------------------------


def test_bragg_resampling_moves_mo_peaks_to_cu_positions(tmp_path, tmp_path_factory):
    from xrdpipe.patterns.datasets import load_peaks

    built = build_tiny_store(tmp_path_factory.getbasetemp() / "train-stores")
    ref = load_peaks(built / "patterns.zarr", "reference")
    m = 3  # BaTiO3 (cubic): few, strong, well-separated reflections
    d = ref.peaks.d_spacing[m, 0][ref.peaks.peak_mask[m, 0]].numpy().astype(np.float64)
    inten = ref.peaks.intensity[m, 0][ref.peaks.peak_mask[m, 0]].numpy()
    assert np.allclose(
        bragg_convert(2 * np.rad2deg(np.arcsin(MO_KA1 / (2 * d))), MO_KA1, CU_MEAN),
        2 * np.rad2deg(np.arcsin(CU_MEAN / (2 * d))),
    )
    mo_cfg = ProfileConfig(two_theta_min=3.0, two_theta_max=38.0, n_points=3501)
    tt_mo = 2 * np.rad2deg(np.arcsin(MO_KA1 / (2 * d)))
    y = render_clean(
        tt_mo[None], inten[None], np.ones((1, len(d)), bool), mo_cfg, wavelength=MO_KA1
    )[0].numpy()
    grid_mo = np.linspace(3.0, 38.0, 3501)
    pattern = read_pattern(write_xy(tmp_path / "mo.xy", grid_mo, 1e4 * y), wavelength=MO_KA1)
    prepared = prepare_pattern(pattern, MODEL_GRID)
    assert "Bragg" in " ".join(prepared.notes)
    tt_cu = 2 * np.rad2deg(np.arcsin(CU_MEAN / (2 * d)))
    grid = MODEL_GRID.two_theta
    step = MODEL_GRID.step_deg
    checked = 0
    for t, i in zip(tt_cu, inten, strict=True):
        others = np.abs(tt_cu - t)
        isolated = np.all((others > 0.6) | (others == 0) | (inten < 5))
        if i < 20 or not isolated or not 11 < t < 79:
            continue
        window = np.abs(grid - t) < 0.5
        found = grid[window][np.argmax(prepared.x[window])]
        assert abs(found - t) <= step, (t, found)
        checked += 1
    assert checked >= 3


# --- models in a real MLflow store -----------------------------------------------------------

PHASE_PRESET = TINY_PHASE_PRESET.model_copy(
    update={
        "epochs": 60,
        "lr_schedule": "cosine",
        "epoch_size": 512,
        "batch_size": 64,
        "lr": 1e-3,
        "n_test": 64,
        "num_threads": 1,
    }
)
CLASSIFIER_PRESET = TINY_CLASSIFIER_PRESET.model_copy(
    update={"epochs": 60, "variants": ("position_channel",), "rf_trees": 0, "num_threads": 1}
)
CLASSIFIER = tracking.registered_model_name("lattice-system", "tiny")
PHASE = tracking.registered_model_name("phase-fractions", "tiny", 3, max_phases=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny store, a phase-fraction model (N=3, K=2) and two a-CNN seeds, registered."""
    root = tmp_path_factory.mktemp("predict")
    built = build_tiny_store(tmp_path_factory.getbasetemp() / "train-stores")
    yield build_registry(root, built)
    mlflow.set_tracking_uri("")


def build_registry(root: Path, built: Path) -> dict:
    shutil.copytree(built, root / "data" / "tiny")
    store = root / "data" / "tiny" / "patterns.zarr"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.configure(uri, artifact_root=root / "artifacts")
    torch.manual_seed(0)
    phase, _ = train_task(
        "phase-fractions",
        "tiny",
        TINY_SUBSET,
        "tiny",
        PHASE_PRESET,
        store,
        n_materials=3,
        max_phases=2,
        seed=0,
        progress=False,
    )
    classifiers = [
        train_task(
            "lattice-system",
            "tiny",
            TINY_SUBSET,
            "tiny",
            CLASSIFIER_PRESET,
            store,
            seed=seed,
            progress=False,
        )[0]
        for seed in (0, 1)
    ]
    return {"root": root, "store": store, "uri": uri, "phase": phase, "classifiers": classifiers}


@pytest.fixture
def registry(tiny):
    tracking.configure(tiny["uri"], artifact_root=tiny["root"] / "artifacts")
    yield tiny
    mlflow.set_tracking_uri("")


def _five_files(tiny, folder: Path) -> list[tuple[Path, np.ndarray, list[int]]]:
    """Five measured-like files of the phase model's materials from held-out test strains:
    three single phases and two binary mixtures; (path, true fractions, material indices)."""
    from xrdpipe.patterns.datasets import load_peaks

    ids = tiny["phase"].materials
    peaks = load_peaks(tiny["store"], "test", ids)
    cases = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.4, 0], [0, 0.3, 0.7]]
    grid = file_grid()
    out = []
    for k, fractions in enumerate(cases):
        counts = simulate_counts(peaks, [0, 1, 2], fractions, strain=k % 4, seed=k)
        name = folder / f"sample{k}.{'xrdml' if k % 2 == 0 else 'xy'}"
        if k % 2 == 0:
            write_xrdml(name, grid, counts)
        else:
            write_xy(name, grid, counts)
        out.append((name, np.asarray(fractions, float), [0, 1, 2]))
    return out


def test_predictions_on_simulated_files_are_right(registry, tmp_path):
    from xrdpipe.stages.predict import load_model_ensemble, predict_files

    phase = load_model_ensemble(PHASE)
    classifier = load_model_ensemble(CLASSIFIER)
    assert phase.how == "@champion"  # a first phase-fraction version is promoted
    assert classifier.how == "@candidate" and "no '@champion'" in classifier.notes[0]
    assert phase.labels == registry["phase"].materials and len(phase.members) == 1
    assert phase.grid == ModelGrid(10.0, 80.0, 1501, pytest.approx(CU_MEAN, abs=1e-4))
    assert len(classifier.members) == 2 and {m.seed for m in classifier.members} == {"0", "1"}
    files = _five_files(registry, tmp_path)
    results, failures = predict_files(
        [f for f, _, _ in files], [classifier, phase], out_dir=tmp_path / "out"
    )
    assert failures == {}
    from xrdpipe.patterns.datasets import load_peaks

    peaks = load_peaks(registry["store"], "test", phase.labels)
    systems = peaks.materials["lattice_system"]
    report = []
    for k, ((path, truth, _), result) in enumerate(zip(files, results, strict=True)):
        cls, frac = result.outputs
        tvd = 0.5 * np.abs(frac.mean - truth).sum()
        np.testing.assert_allclose(frac.mean.sum(), 1, rtol=1e-5)
        assert np.all(frac.std == 0)  # one member
        assert result.plot is not None and result.plot.read_bytes()[:4] == b"\x89PNG"
        # reported beside: the model on the same mixture rendered as a training input (random
        # peak shapes and backgrounds differ, so the two need not agree on a tiny model)
        direct, _ = phase.predict(render_direct(peaks, truth, k % 4, seed=k))
        fidelity = 0.5 * np.abs(frac.mean - direct[0]).sum()
        report.append((path.name, truth.tolist(), np.round(frac.mean, 3).tolist(), tvd, fidelity))
        assert int(frac.mean.argmax()) == int(truth.argmax()), report[-1]
        assert tvd <= 0.1, report[-1]  # the bar, mixtures included
        if truth.max() == 1:  # single phase: and the a-CNN's right lattice system
            expected = systems.iloc[int(truth.argmax())]
            assert cls.labels[cls.ranked()[0]] == expected, (path.name, cls.mean)
            assert cls.std.max() > 0  # two seeds disagree a little
    print("\n".join(map(str, report)))  # binary mixtures: see docs/predict.md
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(summary["results"]) == 5 and summary["failed"] == {}
    # the lattice-system classifier is joined with each file's indexing; the phase model not
    assert classifier.outcomes is not None and phase.outcomes is None
    assert all(r.outputs[0].indexing is not None and r.outputs[1].indexing is None for r in results)
    for r in summary["results"]:
        found = r["predictions"][0]["indexing"]
        assert found["outcome"] in OUTCOMES and found["text"]
        assert found["cell"] is None or found["cell"]["n_indexed"] <= found["cell"]["n_lines"]
    plain, _ = predict_files([files[0][0]], [classifier], indexing=False)
    assert plain[0].outputs[0].indexing is None


def test_cli_batch_goes_on_past_bad_files(registry, tmp_path):
    from xrdpipe.cli import app

    files = [str(f) for f, _, _ in _five_files(registry, tmp_path)[:2]]
    (tmp_path / "broken.xrdml").write_text("<xrdMeasurements><scan>")
    (tmp_path / "notes.docx").write_text("x")
    client = MlflowClient()
    client.set_registered_model_alias(CLASSIFIER, "champion", "1")
    args = [
        "predict",
        files[0],
        str(tmp_path / "broken.xrdml"),
        files[1],
        str(tmp_path / "notes.docx"),
        "--classifier",
        CLASSIFIER,
        "--phase-model",
        PHASE,
        "--out",
        str(tmp_path / "cli"),
        "--tracking-uri",
        registry["uri"],
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    out = result.output
    assert "2 of 4 file(s) predicted" in out and "2 file(s) failed" in out
    assert "broken.xrdml: malformed or truncated XML" in out
    assert "notes.docx: extension '.docx' is not supported" in out
    assert f"{CLASSIFIER} v1 @champion, 2 members (seeds 0, 1)" in out
    assert f"{PHASE} v1 @champion, 1 member: std 0, no ensemble" in out
    assert (tmp_path / "cli" / "sample0.png").is_file()
    # one version on request, no ensemble; an unknown model fails before any file
    again = CliRunner().invoke(
        app,
        [
            "predict",
            files[0],
            "--classifier",
            CLASSIFIER,
            "--version",
            "2",
            "--no-ensemble",
            "--out",
            str(tmp_path / "v2"),
            "--tracking-uri",
            registry["uri"],
        ],
    )
    assert again.exit_code == 0, again.output
    assert f"{CLASSIFIER} v2 version 2, 1 member" in again.output
    missing = CliRunner().invoke(
        app, ["predict", files[0], "--phase-model", "nope", "--tracking-uri", registry["uri"]]
    )
    assert missing.exit_code == 2 and "no registered model 'nope'" in missing.output


def test_cam_and_reference_peaks_come_from_checkpoint_and_store(registry):
    from xrdpipe.stages.predict import load_model_ensemble

    classifier = load_model_ensemble(CLASSIFIER, version=1, ensemble=False)
    x = np.random.default_rng(0).random(1501).astype(np.float32)
    cam = classifier.cam(x, 0)
    assert cam is not None and cam.shape == (1501,)
    # the CAM's mean plus the bias is the logit (models/acnn.py), so it matches the pt2 model
    network = classifier.members[0].network
    logit = network(torch.from_numpy(x)[None])[0, 0].item()
    cam_raw = __import__("xrdpipe.models.acnn", fromlist=["x"]).class_activation_maps(
        network, torch.from_numpy(x)[None], 0, upsample=False
    )
    assert cam_raw.mean().item() + network.classifier.bias[0].item() == pytest.approx(
        logit, abs=1e-4
    )
    phase = load_model_ensemble(PHASE)
    references, why = phase.reference_peaks()
    assert why is None and set(references) == set(phase.labels)
    assert all(len(v) > 0 and v.min() >= 10 and v.max() <= 80 for v in references.values())
