"""Paper 000's cross-validated classifier comparison, its table and its CAM figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from tests.support import TINY_SUBSET
from xrdpipe.config import ClassifierPreset
from xrdpipe.evaluation import cam_plots
from xrdpipe.evaluation.cv import METHODS, CVResult, acnn_cams, cross_validate_classifiers
from xrdpipe.evaluation.folds import make_folds
from xrdpipe.evaluation.plots import plot_confusion_matrix
from xrdpipe.evaluation.tables import PAPER_000_REPORTED, classification_table
from xrdpipe.models import ACNN, ACNNConfig
from xrdpipe.stages.classifiers import run_classification_evaluation
from xrdpipe.training.classifier import fit_acnn

TINY_PRESET = ClassifierPreset(
    model={"variants": ("position_channel",)},
    train={
        "batch_size": 16,
        "lr": 3e-3,
        "epochs": 1,
        "early_stopping_patience": None,
        "device": "cpu",
        "num_threads": 1,
    },
    data={"augment": False},
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _synthetic(n_materials: int = 15, n_strains: int = 6, n_points: int = 600, seed: int = 0):
    """Profiles with a class peak and material-specific peaks, a little noise per strain."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n_materials) % 3
    profiles = 0.02 * rng.random((n_materials, n_strains, n_points)).astype(np.float32)
    for m in range(n_materials):
        profiles[m, :, rng.integers(0, n_points, 5)] += 0.6
        profiles[m, :, 100 + 150 * labels[m]] += 1.0
    return profiles / profiles.max(axis=2, keepdims=True), labels


def _material_sets(fold, n_strains: int) -> tuple[set[int], set[int]]:
    return set((fold.train // n_strains).tolist()), set((fold.test // n_strains).tolist())


def test_strain_folds_partition_the_patterns_and_keep_every_material_in_both_parts():
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    folds = make_folds(labels, n_strains=10, protocol="strain", n_folds=5, seed=4)
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(70))  # a partition
    for fold in folds:
        assert len(np.intersect1d(fold.train, fold.test)) == 0
        assert len(fold.train) + len(fold.test) == 70
        train_mats, test_mats = _material_sets(fold, 10)
        assert train_mats == test_mats == set(range(7))
        # two strain conditions of every material in each test part
        np.testing.assert_array_equal(np.bincount(fold.test // 10, minlength=7), [2] * 7)
    # seeded: same seed, same folds; another seed, other folds
    again = make_folds(labels, 10, "strain", 5, seed=4)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))
    other = make_folds(labels, 10, "strain", 5, seed=5)
    assert not all(np.array_equal(a.test, b.test) for a, b in zip(folds, other, strict=True))


def test_material_folds_are_disjoint_by_material_and_stratified():
    labels = np.repeat(np.arange(5), 5)  # 5 classes of 5 materials
    folds = make_folds(labels, n_strains=3, protocol="material", n_folds=5, seed=0)
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(75))
    for fold in folds:
        train_mats, test_mats = _material_sets(fold, 3)
        assert not train_mats & test_mats
        assert train_mats | test_mats == set(range(25))
        assert sorted(labels[sorted(test_mats)].tolist()) == [0, 1, 2, 3, 4]  # one per class


def test_folds_refuse_too_few_strains_or_materials():
    from xrdpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="strain conditions"):
        make_folds(np.zeros(8, int), n_strains=3, protocol="strain", n_folds=5)
    with pytest.raises(ConfigError, match="materials"):
        make_folds(np.zeros(3, int), n_strains=10, protocol="material", n_folds=5)
    with pytest.raises(ConfigError, match="protocol"):
        make_folds(np.zeros(8, int), n_strains=10, protocol="random", n_folds=5)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def synthetic_results() -> dict[str, CVResult]:
    profiles, labels = _synthetic()
    names = ["cubic", "hexagonal", "monoclinic"]
    return {
        protocol: cross_validate_classifiers(
            profiles,
            [names[i] for i in labels],  # names are accepted as labels
            names,
            protocol,
            n_folds=3,
            methods=METHODS,
            seed=1,
            preset=TINY_PRESET,
            two_theta=np.linspace(10.0, 80.0, profiles.shape[2]),
            n_bins=120,
            max_strains_per_material=5,
            target="lattice_system",
            device="cpu",
            n_jobs=1,
        )
        for protocol in ("strain", "material")
    }


def test_every_method_uses_the_same_folds_and_per_fold_metrics_match_sklearn(synthetic_results):
    result = synthetic_results["material"]
    assert result.n_strains == 5 and result.n_materials == 15
    assert result.y_true.shape == (75,)
    labels = [0, 1, 2]
    for method in METHODS:
        folds = result.per_fold[method]
        assert [mf.fold for mf in folds] == [0, 1, 2]
        assert (result.predictions[method] >= 0).all()  # each pattern tested exactly once
        for fold, mf in zip(result.folds, folds, strict=True):
            yt, yp = result.y_true[fold.test], result.predictions[method][fold.test]
            m = mf.metrics
            assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp))
            assert m["micro_f1"] == pytest.approx(f1_score(yt, yp, average="micro"))
            assert m["macro_f1"] == pytest.approx(
                f1_score(yt, yp, labels=labels, average="macro", zero_division=0)
            )
            np.testing.assert_array_equal(m["confusion"], confusion_matrix(yt, yp, labels=labels))
            precision = precision_score(yt, yp, labels=labels, average=None, zero_division=0)
            recall = recall_score(yt, yp, labels=labels, average=None, zero_division=0)
            assert list(m["precision"].values()) == pytest.approx(precision.tolist())
            assert list(m["recall"]) == result.class_names
            assert list(m["recall"].values()) == pytest.approx(recall.tolist())
        pooled = result.pooled[method]
        assert pooled["accuracy"] == pytest.approx(
            accuracy_score(result.y_true, result.predictions[method])
        )
        assert pooled["confusion"].sum() == 75
    # the a-CNN kept its fold models and recorded its training
    acnn = result.per_fold["acnn"][0]
    assert isinstance(acnn.model, ACNN) and acnn.model.config.position_channel
    assert acnn.extra["epochs"] == 1 and acnn.extra["n_validation"] > 0
    # the separable synthetic classes are learnt by the tree models
    assert result.pooled["random_forest"]["accuracy"] > 0.6  # chance: 1/3


def test_the_table_has_every_method_per_protocol_beside_the_paper(synthetic_results):
    table = classification_table(synthetic_results)
    assert table.index.tolist() == list(METHODS) and len(METHODS) == 9
    assert {c[0] for c in table.columns} == {"label", "strain", "material", "paper 000"}
    assert table.loc["acnn", ("paper 000", "accuracy")] == 0.956  # lattice -> crystal system
    assert np.isnan(table.loc["mlp", ("paper 000", "accuracy")])
    numeric = classification_table(synthetic_results, numeric=True, paper=False)
    frame = synthetic_results["strain"].fold_frame()
    forest = frame[frame["method"] == "random_forest"]["macro_f1"]
    assert numeric.loc["random_forest", ("strain", "macro_f1", "mean")] == pytest.approx(
        forest.mean()
    )
    assert numeric.loc["random_forest", ("strain", "macro_f1", "std")] == pytest.approx(
        forest.std(ddof=1)
    )
    cell = table.loc["random_forest", ("strain", "macro_f1")]
    assert cell == f"{forest.mean():.3f} ± {forest.std(ddof=1):.3f}"
    assert set(PAPER_000_REPORTED["crystal_system"]) == set(METHODS)


def test_cam_plots_write_pngs(tmp_path):
    profiles, labels = _synthetic(n_materials=6, n_strains=2)
    x = profiles.reshape(-1, profiles.shape[2])
    y_true = np.repeat(labels, 2)
    y_pred = (y_true + np.arange(len(y_true)) % 2) % 3  # half of them wrong
    two_theta = np.linspace(10.0, 80.0, x.shape[1])
    torch.manual_seed(0)
    model = ACNN(ACNNConfig(n_points=x.shape[1], n_classes=3))
    cams = acnn_cams(model, x, y_true)
    assert cams.shape == x.shape and np.isfinite(cams).all()
    names = ["cubic", "hexagonal", "monoclinic"]
    paths = [
        cam_plots.plot_class_mean_cams(two_theta, x, cams, y_true, names, tmp_path / "a.png"),
        cam_plots.plot_misclassified_cams(
            two_theta, x, cams, y_true, y_pred, names, tmp_path / "b.png", max_samples=4
        ),
        cam_plots.plot_misclassified_cams(
            two_theta, x, cams, y_true, y_true, names, tmp_path / "none.png"
        ),
        plot_confusion_matrix(confusion_matrix(y_true, y_pred), names, tmp_path / "c.png", "test"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 2000
    with pytest.raises(ValueError, match="cams"):
        cam_plots.plot_class_mean_cams(two_theta, x, cams[:, :-1], y_true, names, tmp_path / "x")


def test_run_classification_evaluation_on_a_tiny_store(tiny_store, tmp_path):
    methods = ("acnn", "naive_bayes", "random_forest")  # all nine: see the synthetic tests
    evaluation = run_classification_evaluation(
        tiny_store,
        TINY_SUBSET,
        TINY_PRESET,
        "lattice_system",
        methods=methods,
        n_folds=5,
        n_bins=150,
        max_strains_per_material=10,
        max_materials=None,
        device="cpu",
        n_jobs=1,
        plot_dir=tmp_path / "plots",
    )
    assert set(evaluation.results) == {"strain", "material"}
    assert len(evaluation.material_ids) == 7 and len(evaluation.class_names) == 6
    strain, material = evaluation.results["strain"], evaluation.results["material"]
    assert strain.n_strains == 10
    for fold in strain.folds:
        train_mats, test_mats = _material_sets(fold, strain.n_strains)
        assert train_mats == test_mats == set(range(7))
    for fold in material.folds:
        train_mats, test_mats = _material_sets(fold, material.n_strains)
        assert test_mats and not train_mats & test_mats
    assert evaluation.table.index.tolist() == list(methods)
    assert set(strain.pooled) == set(material.pooled) == set(methods)
    assert evaluation.config["store"]["strain_mode"] == "symmetry"
    assert "strain/acnn/accuracy_mean" in evaluation.metrics()
    expected = {f"confusion_{p}_{m}" for p in ("strain", "material") for m in methods}
    expected |= {
        f"cam_{kind}_{p}"
        for kind in ("class_means", "misclassified")
        for p in ("strain", "material")
    }
    assert set(evaluation.plots) == expected
    for path in evaluation.plots.values():
        assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    ("variant", "position_channel", "pool_bins"),
    [("paper", False, 1), ("position_channel", True, 1), ("binned", False, 4)],
)
def test_fit_acnn_builds_the_variant_it_is_asked_for(variant, position_channel, pool_bins):
    """Each a-CNN variant of the tables is the network train_classifier would build."""
    x, labels = _synthetic()
    x, y = x.reshape(-1, x.shape[-1]), np.repeat(labels, x.shape[1])
    preset = TINY_PRESET.model_copy(update={"pool_bins": 4, "lr_schedule": "cosine"})
    model, result = fit_acnn(x, y, x[:8], y[:8], 3, preset, variant=variant, seed=0)
    assert model.config.position_channel is position_channel
    assert model.config.pool_bins == pool_bins
    assert len(result.history) == preset.train.epochs
