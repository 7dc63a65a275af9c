"""Paper 000's synthetic+material column: material folds trained on synthetic plus COD."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from tests.evaluation.test_synthetic_to_real import CLASSES, GRID, PRESET, _structures
from xrdpipe.errors import ConfigError
from xrdpipe.evaluation import synthetic_plus_material as spm
from xrdpipe.evaluation import synthetic_to_real as s2r
from xrdpipe.evaluation.tables import classification_table
from xrdpipe.stages.classifiers import check_synthetic_options
from xrdpipe.training.seeds import seed_for


def test_real_training_renders_are_on_their_own_stream():
    streams = {spm.REAL_TRAIN_STREAM, s2r.SYNTHETIC_TRAIN_STREAM, s2r.TEST_STREAM}
    assert len(streams) == 3
    real = {seed_for(spm.REAL_TRAIN_STREAM, s, b) for s in range(3) for b in range(200)}
    test = {seed_for(s2r.TEST_STREAM, s, b) for s in range(3) for b in range(200)}
    assert not real & test


def test_material_folds_with_synthetic_training_match_scikit_learn():
    train, y_train = _structures(3, 3.2)
    val, y_val = _structures(1, 3.9)
    real, y_real = _structures(5, 2.9)  # 15 real structures, 5 a class
    result = spm.synthetic_plus_material(
        train, y_train, val, y_val, real, y_real, CLASSES,
        profile=GRID, preset=PRESET, methods=("naive_bayes", "knn"), n_folds=5,
        draws=2, test_draws=2, n_bins=100, target="lattice_system",
    )  # fmt: skip
    assert result.protocol == "synthetic+material" and len(result.folds) == 5
    tested = np.concatenate([f.test for f in result.folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(30))  # every render once
    for fold in result.folds:  # no real structure in both parts
        assert not set(fold.train // 2) & set(fold.test // 2)
    accuracies = []
    for fold in result.folds:
        y, p = result.y_true[fold.test], result.predictions["knn"][fold.test]
        mf = result.per_fold["knn"][fold.index]
        assert mf.metrics["accuracy"] == pytest.approx(accuracy_score(y, p))
        assert mf.metrics["macro_f1"] == pytest.approx(
            f1_score(y, p, labels=[0, 1, 2], average="macro", zero_division=0)
        )
        accuracies.append(accuracy_score(y, p))
    summary = result.summary()
    assert summary.loc["knn", "accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert summary.loc["knn", "accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    table = classification_table({"synthetic+material": result})
    assert ("synthetic+material", "accuracy") in table.columns


def test_an_unknown_synthetic_protocol_names_the_option_and_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"synthetic_protocols \['synthetic'\].*synthetic\+"):
        check_synthetic_options(None, 1000, 4, ("synthetic",))
