"""Paper 000's synthetic-to-real column: training set, streams, metrics, the stage's option."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from tests.support import TINY_SUBSET
from xrdpipe.config import ClassifierPreset
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation import synthetic_to_real as s2r
from xrdpipe.evaluation import unseen as u
from xrdpipe.evaluation.tables import classification_table
from xrdpipe.patterns.config import ProfileConfig
from xrdpipe.stages.classifiers import run_classification_evaluation
from xrdpipe.structures.symmetry import analyse_symmetry
from xrdpipe.training.seeds import seed_for

GRID = ProfileConfig(two_theta_min=20.0, two_theta_max=70.0, n_points=1001)
PRESET = ClassifierPreset(
    model={"variants": ("binned",), "pool_bins": 4},
    train={"batch_size": 16, "lr": 3e-3, "epochs": 1, "device": "cpu", "num_threads": 1},
    data={"augment": False},
)
CLASSES = ["cubic", "tetragonal", "hexagonal"]


def _crystal(kind: str, a: float) -> Structure:
    """One-atom prototypes: fcc Cu (cubic), body-centred tetragonal, hcp-like hexagonal."""
    if kind == "cubic":
        return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Cu"], [[0, 0, 0]])
    if kind == "tetragonal":
        return Structure.from_spacegroup(
            "I4/mmm", Lattice.tetragonal(a, 1.8 * a), ["Sn"], [[0, 0, 0]]
        )
    return Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(a, 1.62 * a), ["Mg"], [[1 / 3, 2 / 3, 0.25]]
    )


def _structures(per_class: int, start: float) -> tuple[list[Structure], np.ndarray]:
    structures, labels = [], []
    for k, kind in enumerate(CLASSES):
        for i in range(per_class):
            structures.append(_crystal(kind, start + 0.13 * i + 0.05 * k))
            labels.append(k)
    return structures, np.array(labels)


def _manifest(structures: list[Structure]) -> pd.DataFrame:
    """A synthetic manifest as the synthetic source writes it (labels from spglib)."""
    rows = []
    for i, s in enumerate(structures):
        info = analyse_symmetry(s)
        rows.append(
            {
                "cod_id": f"synth-{i:08d}",
                "lattice_system": info.lattice_system,
                "crystal_system": info.crystal_system,
                "space_group_number": info.space_group_number,
                "structure_json": json.dumps(s.as_dict()),
            }
        )
    return pd.DataFrame(rows)


def test_hand_built_crystals_have_the_lattice_systems_they_are_built_for():
    structures, labels = _structures(2, 3.0)
    assert _manifest(structures)["lattice_system"].tolist() == [CLASSES[k] for k in labels]


def test_training_set_is_the_split_s_training_part_balanced_and_capped():
    labels = ["cubic"] * 40 + ["tetragonal"] * 20 + ["hexagonal"] * 20 + ["triclinic"] * 10
    train, val, y = s2r.synthetic_training_set(labels, CLASSES, 40, PRESET, seed=1)
    assert (y[80:] == -1).all()  # not a class of the test set: left out
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) <= 40 and (y[train] >= 0).all() and (y[val] >= 0).all()
    # balanced as the manifest is: cubic twice each other class
    counts = np.bincount(y[np.concatenate([train, val])], minlength=3)
    assert counts[0] == pytest.approx(2 * counts[1], abs=2) and counts[1] == counts[2]
    # the split's test part (20 % of each class) is never used
    train_all, val_all, _ = s2r.synthetic_training_set(labels, CLASSES, 1000, PRESET, seed=1)
    assert len(train_all) + len(val_all) == 80 - (8 + 4 + 4)
    with pytest.raises(ConfigError, match="classes"):
        s2r.synthetic_training_set(["triclinic"] * 5, CLASSES, 10, PRESET)


def test_training_and_test_renders_share_no_random_stream():
    assert s2r.SYNTHETIC_TRAIN_STREAM != s2r.TEST_STREAM == u.EVALUATION_STREAM
    train_seeds = {seed_for(s2r.SYNTHETIC_TRAIN_STREAM, s, b) for s in range(3) for b in range(200)}
    val_seeds = {
        seed_for(s2r.SYNTHETIC_TRAIN_STREAM, seed_for(s, 1), b)
        for s in range(3)
        for b in range(200)
    }
    test_seeds = {seed_for(s2r.TEST_STREAM, s, b) for s in range(3) for b in range(200)}
    assert not train_seeds & test_seeds and not val_seeds & test_seeds
    # the same crystal through both paths: the same peaks, different instrument draws
    profile = u.measured_like_profile(GRID)
    crystal = [_crystal("cubic", 3.61)]
    train = s2r.render_prepared(crystal, profile, 3, 0, s2r.SYNTHETIC_TRAIN_STREAM)
    test = s2r.render_prepared(crystal, profile, 3, 0, s2r.TEST_STREAM)
    np.testing.assert_array_equal(
        test, s2r.render_prepared(crystal, profile, 3, 0, s2r.TEST_STREAM)
    )
    assert train.shape == test.shape == (3, 1001)
    assert all(not np.allclose(a, b, atol=1e-3) for a in train for b in test)
    # fcc Cu's 111 line at d = a / sqrt(3): 2 theta = 43.3 deg at Cu K-alpha1
    two_theta = np.linspace(20, 70, 1001)
    assert all(abs(two_theta[row.argmax()] - 43.3) < 0.6 for row in np.r_[train, test])


@pytest.fixture(scope="module")
def column() -> tuple[s2r.SyntheticToRealResult, np.ndarray]:
    train, y_train = _structures(4, 3.2)
    val, y_val = _structures(1, 3.9)
    test, y_test = _structures(3, 2.9)
    result = s2r.synthetic_to_real(
        train, y_train, val, y_val, test, y_test, CLASSES,
        profile=GRID, preset=PRESET, methods=("acnn", "naive_bayes", "random_forest", "knn"),
        draws=2, test_draws=2, n_bins=100, n_boot=200, target="lattice_system",
    )  # fmt: skip
    return result, y_test


def test_the_column_metrics_are_scikit_learn_s_on_its_predictions(column):
    result, y_test = column
    assert result.protocol == "synthetic-to-real"
    np.testing.assert_array_equal(result.y_true, np.repeat(y_test, 2))
    assert result.n_materials == 9 and result.n_strains == 2
    np.testing.assert_array_equal(result.folds[0].test, np.arange(18))
    assert result.training["patterns"] == (12 + 3) * 2
    summary = result.summary()
    for method in result.methods:
        y, p = result.y_true, result.predictions[method]
        assert summary.loc[method, "accuracy_mean"] == pytest.approx(accuracy_score(y, p))
        assert summary.loc[method, "macro_f1_mean"] == pytest.approx(
            f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
        )
        assert summary.loc[method, "balanced_accuracy_mean"] == pytest.approx(
            balanced_accuracy_score(y, p)
        )
        assert summary.loc[method, "accuracy_std"] == result.bootstrap_std[method]["accuracy"]
    table = classification_table({"synthetic-to-real": result})
    assert table.index.tolist() == ["acnn", "naive_bayes", "random_forest", "knn"]
    mean = summary.loc["knn", "accuracy_mean"]
    std = summary.loc["knn", "accuracy_std"]
    assert table.loc["knn", ("synthetic-to-real", "accuracy")] == f"{mean:.3f} ± {std:.3f}"
    assert table.loc["acnn", ("paper 000", "accuracy")] == 0.956


def test_bootstrap_std_over_structures_is_the_binomial_standard_error():
    # 400 structures x 3 renders, a structure's renders all right or all wrong: p = 0.3
    rng = np.random.default_rng(5)
    right = rng.permutation(np.r_[np.ones(120, bool), np.zeros(280, bool)])
    y = np.zeros(1200, np.int64)
    pred = np.where(np.repeat(right, 3), 0, 1)
    groups = np.repeat(np.arange(400), 3)
    std = s2r.bootstrap_std(y, {"m": pred}, groups, [0, 1], ["a", "b"], n_boot=1000, seed=1)
    expected = math.sqrt(0.3 * 0.7 / 400)  # 0.0229: per structure, not per render (0.0132)
    assert std["m"]["accuracy"] == pytest.approx(expected, rel=0.12)
    perfect = s2r.bootstrap_std(y, {"m": y}, groups, [0, 1], ["a", "b"], n_boot=50)
    assert perfect["m"]["accuracy"] == 0.0


def test_bad_settings_name_themselves(tmp_path):
    crystals, labels = _structures(1, 3.0)
    with pytest.raises(ConfigError, match="draws"):
        s2r.synthetic_to_real(
            crystals, labels, crystals, labels, crystals, labels, CLASSES,
            profile=GRID, preset=PRESET, draws=0,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="methods"):
        s2r.synthetic_to_real(
            crystals, labels, crystals, labels, crystals, labels, CLASSES,
            profile=GRID, preset=PRESET, methods=("forest",),
        )  # fmt: skip
    with pytest.raises(ConfigError, match="at most 20000"):
        s2r.synthetic_to_real(
            crystals * 2000, np.tile(labels, 2000), crystals, labels, crystals, labels, CLASSES,
            profile=GRID, preset=PRESET, draws=4,
        )  # fmt: skip


def test_the_stage_adds_the_column_on_the_store_s_materials(tiny_store, tmp_path):
    structures, _ = _structures(5, 3.1)
    path = tmp_path / "synthetic" / "manifest.parquet"
    path.parent.mkdir()
    _manifest(structures).to_parquet(path)
    common = {
        "methods": ("naive_bayes", "random_forest"),
        "n_folds": 5,
        "n_bins": 150,
        "max_strains_per_material": 5,
        "max_materials": None,
        "device": "cpu",
    }
    for bad, match in (
        ({"synthetic_manifest": tmp_path / "missing.parquet"}, "synthetic_manifest"),
        ({"synthetic_manifest": path, "synthetic_patterns": 30_000}, "synthetic_patterns"),
        ({"synthetic_manifest": path, "synthetic_draws": 0}, "synthetic_draws"),
    ):
        with pytest.raises(ConfigError, match=match):
            run_classification_evaluation(tiny_store, TINY_SUBSET, PRESET, **common, **bad)
    evaluation = run_classification_evaluation(
        tiny_store, TINY_SUBSET, PRESET, **common, synthetic_manifest=path,
        synthetic_draws=2, synthetic_test_draws=3, plot_dir=tmp_path / "plots",
        synthetic_protocols=("synthetic-to-real", "synthetic+material"),
    )  # fmt: skip
    assert list(evaluation.results) == [
        "strain", "material", "synthetic-to-real", "synthetic+material"
    ]  # fmt: skip
    plus = evaluation.results["synthetic+material"]
    assert plus.n_materials == 7 and len(plus.folds) == 5
    column = evaluation.results["synthetic-to-real"]
    # tested on the store's 7 materials, with the labels of the other two columns
    assert column.n_materials == len(evaluation.material_ids) == 7
    strain = evaluation.results["strain"]
    np.testing.assert_array_equal(column.y_true[::3], strain.y_true[:: strain.n_strains])
    assert column.class_names == evaluation.class_names
    # the synthetic crystals of the store's classes only (cubic, tetragonal, hexagonal)
    present = [c for c in CLASSES if c in evaluation.class_names]
    assert column.training["structures"] + column.training["validation_structures"] == (
        len(present) * 4  # 5 per class, one in the split's test part
    )
    groups = evaluation.table.columns.get_level_values(0)
    assert "synthetic-to-real" in set(groups)
    assert "synthetic-to-real/random_forest/accuracy_mean" in evaluation.metrics()
    assert "confusion_synthetic-to-real_naive_bayes" in evaluation.plots
    assert evaluation.config["protocols"] == list(evaluation.results)


def test_the_command_s_bad_option_names_itself(tmp_path):
    """``xrdpipe evaluate-classifiers --synthetic-*``: refused before anything runs."""
    from typer.testing import CliRunner

    from xrdpipe.cli import app

    base = ["evaluate-classifiers", "acnn", "--data-dir", str(tmp_path)]
    missing = CliRunner().invoke(
        app, [*base, "--synthetic-manifest", str(tmp_path / "missing.parquet")]
    )
    assert missing.exit_code != 0 and "synthetic_manifest" in missing.output
    manifest = tmp_path / "manifest.parquet"
    _manifest(_structures(1, 3.0)[0]).to_parquet(manifest)
    too_many = CliRunner().invoke(
        app, [*base, "--synthetic-manifest", str(manifest), "--synthetic-patterns", "30000"]
    )
    assert too_many.exit_code != 0 and "synthetic_patterns must be 8-20000" in too_many.output
