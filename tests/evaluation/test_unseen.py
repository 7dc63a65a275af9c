"""The synthetic-to-real test set: de-duplication, labels, prototypes, renders and metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    top_k_accuracy_score,
)

from tests.support import manifest_row
from xrdpipe.evaluation import unseen as u
from xrdpipe.patterns.config import ProfileConfig

GRID = ProfileConfig(two_theta_min=20.0, two_theta_max=60.0, n_points=801)


def _rock_salt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _row(cod_id: str, structure: Structure) -> dict:
    return {
        "cod_id": cod_id,
        "reduced_formula": structure.composition.reduced_formula,
        "structure_json": json.dumps(structure.as_dict()),
    }


@pytest.fixture(scope="module")
def manifests(cod_sample) -> dict[str, pd.DataFrame]:
    """Two subsets sharing one COD id, plus a shifted supercell of PdO under another id."""
    pdo = Structure.from_dict(json.loads(manifest_row("1009031")["structure_json"]))
    moved = pdo.copy()
    moved.translate_sites(range(len(moved)), [0.13, 0.07, 0.21])
    moved.make_supercell([1, 1, 2])
    a = pd.DataFrame([manifest_row("1009031"), manifest_row("9008488")])
    b = pd.DataFrame(
        [
            manifest_row("9008488"),
            manifest_row("1000054"),
            _row("900", moved),
            _row("901", _rock_salt()),
        ]
    )
    return {"a": a, "b": b}


def test_deduplication_against_structure_matcher(manifests) -> None:
    frame = u.manifest_structures(manifests)
    out = u.deduplicate_structures(frame)
    assert out["material_id"].tolist() == ["1000054", "1009031", "9008488", "901"]
    assert out.set_index("material_id").loc["1009031", "duplicates"] == "900"
    assert out.set_index("material_id").loc["9008488", "subsets"] == "a,b"
    assert out.set_index("material_id").loc["1009031", "subsets"] == "a,b"
    # pymatgen's own grouping of the distinct ids gives the same number of groups
    distinct = frame.drop_duplicates("material_id")
    groups = StructureMatcher().group_structures(list(distinct["structure"]))
    assert len(groups) == len(out)


def test_labels_and_prototypes(manifests) -> None:
    out = u.label_structures(u.deduplicate_structures(u.manifest_structures(manifests)))
    by_id = out.set_index("material_id")
    assert by_id.loc["901", "prototype"] == "225:a,b"  # rock salt
    assert by_id.loc["901", "lattice_system"] == "cubic"
    assert by_id.loc["1009031", "space_group_number"] == 131  # reference.csv
    assert by_id.loc["9008488", "crystal_system"] == "hexagonal"
    assert by_id.loc["1000054", "lattice_system"] == "hexagonal"  # P-3m1: trigonal, hP
    training = pd.DataFrame(
        {"space_group_number": [225, 131], "spglib_wyckoff_letters": ["a,b", "a,z"]}
    )
    unseen = dict(zip(out["material_id"], u.unseen_prototypes(out, training), strict=True))
    assert unseen == {"1000054": True, "1009031": True, "9008488": True, "901": False}
    with pytest.raises(ValueError, match="wyckoff"):
        u.unseen_prototypes(out, training.drop(columns="spglib_wyckoff_letters"))


@pytest.fixture(scope="module")
def rock_salts() -> u.PeakLists:
    """Peaks of rock salt at a = 5.64, 4.0 and 5.0 angstrom on the test grid."""
    profile = u.measured_like_profile(GRID)
    return u.structure_peaks([_rock_salt(a) for a in (5.64, 4.0, 5.0)], profile)


def _rows(peaks: u.PeakLists, rows: list[int]) -> u.PeakLists:
    return u.PeakLists(
        peaks.two_theta[rows], peaks.intensity[rows], peaks.d_spacing[rows], peaks.mask[rows]
    )


def test_renders_are_seeded_on_their_own_stream(rock_salts) -> None:
    profile = u.measured_like_profile(GRID)
    peaks = _rows(rock_salts, [0, 1])
    first = u.render_structures(peaks, profile, draws=2, seed=3)
    assert first.shape == (4, 801)
    np.testing.assert_array_equal(first, u.render_structures(peaks, profile, draws=2, seed=3))
    assert not np.allclose(first, u.render_structures(peaks, profile, draws=2, seed=4))
    assert not np.allclose(first, u.render_structures(peaks, profile, 2, 3, stream=1))
    # rock salt's strongest line, 200, at d = a / 2 (K-alpha1 at 5.64 A: 31.70 deg)
    two_theta = np.linspace(20, 60, 801)
    assert abs(two_theta[first[0].argmax()] - 31.70) < 0.3


def test_mixture_fractions(rock_salts) -> None:
    mixed, weights, phases, members = u.mixture_peaks(rock_salts, 20, seed=1)
    for i in range(20):
        k = int((members[i] >= 0).sum())
        assert k in (2, 3)
        shares = [
            (mixed.intensity[i] * weights[i] * mixed.mask[i])[phases[i] == j].sum()
            for j in range(k)
        ]
        assert sum(shares) == pytest.approx(1.0)
        assert min(shares) >= 0.2 - 1e-12


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    y[y == 4] = 3  # class 4 never true
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 5, 300))
    names = ["a", "b", "c", "d", "e"]
    r = u.classification_report(y, pred, names)
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert r["macro_f1"] == pytest.approx(
        f1_score(y, pred, labels=range(5), average="macro", zero_division=0)
    )
    recall = recall_score(y, pred, labels=range(5), average=None, zero_division=0)
    assert list(r["recall"].values()) == pytest.approx(list(recall))
    assert r["support"] == dict(zip(names, np.bincount(y, minlength=5).tolist(), strict=True))
    assert r["confusion"] == confusion_matrix(y, pred, labels=range(5)).tolist()
    scores = rng.normal(size=(300, 5))
    assert u.top_k_accuracy(y, scores, 2) == pytest.approx(
        top_k_accuracy_score(y, scores, k=2, labels=range(5))
    )


def test_paired_bootstrap() -> None:
    y = np.zeros(40, dtype=int)
    right, wrong = np.zeros(40, dtype=int), np.ones(40, dtype=int)
    always = u.paired_bootstrap(y, right, wrong, groups=np.repeat(np.arange(10), 4))
    assert (always.value, always.low, always.high) == (1.0, 1.0, 1.0)
    # a right on structures 0-5 (of 10, 4 draws each), b on 0-2: difference 0.3
    a = np.where(np.repeat(np.arange(10), 4) < 6, 0, 1)
    b = np.where(np.repeat(np.arange(10), 4) < 3, 0, 1)
    interval = u.paired_bootstrap(y, a, b, groups=np.repeat(np.arange(10), 4), n_boot=4000)
    assert interval.value == pytest.approx(0.3)
    # per resampled structure the difference is 0 or 1 (3 of 10 structures): the replicate
    # mean is Binomial(10, 0.3) / 10, whose 2.5 % and 97.5 % quantiles are 0.0 and 0.6
    assert interval.low == pytest.approx(0.0)
    assert interval.high == pytest.approx(0.6)
