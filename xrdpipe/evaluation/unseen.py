"""The synthetic-to-real protocol: real COD structures never used for training, measured-like.

The test set is every COD structure of the project's subsets (``acnn``, ``demo``,
``hoefer2024``: their manifests, as ``xrdpipe fetch`` writes them), de-duplicated across
subsets (:func:`deduplicate_structures`: the same COD id once, then pymatgen's
``StructureMatcher`` within each reduced formula), labelled by spglib with the project's
tolerances (0.1 angstrom, 5 degrees; :func:`label_structures`) and rendered measured-like
through the project's instrument renderer (:func:`render_structures`) with a seeded draw
whose generator is derived from :data:`EVALUATION_STREAM`, a stream no training uses.

Metrics (:func:`classification_report`) are the project's, which agree with scikit-learn's;
two methods on the same patterns are compared by a paired bootstrap over structures
(:func:`paired_bootstrap`); :func:`unseen_prototypes` marks the structures whose
``(space group, Wyckoff letters)`` prototype never occurs in a training manifest.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from xrdpipe.diffraction.peaks import simulate_peaks
from xrdpipe.errors import StructureError
from xrdpipe.evaluation.calibration import Interval
from xrdpipe.evaluation.metrics import classification_metrics
from xrdpipe.patterns.config import (
    AmorphousHumpConfig,
    ChebyshevBackgroundConfig,
    CountingNoiseConfig,
    InstrumentConfig,
    ProfileConfig,
    TCHWidthConfig,
)
from xrdpipe.patterns.render import render_profiles
from xrdpipe.readers import ModelGrid, prepare_pattern
from xrdpipe.readers.base import MeasuredPattern
from xrdpipe.structures.symmetry import analyse_symmetry, wyckoff_letters

TEST_SUBSETS = ("acnn", "demo", "hoefer2024")
"""The project's subsets whose COD structures form the real test set."""
EVALUATION_STREAM = 0x5EED_0E7A1
"""Root of every evaluation draw's seed: ``seed_for(EVALUATION_STREAM, seed, structure,
draw)``; training seeds are small integers and epochs, never this root."""


def measured_like_profile(base: ProfileConfig | None = None) -> ProfileConfig:
    """``base``'s grid rendered like a lab scan: every instrument effect on.

    Cu K-alpha doublet, zero shift +-0.05 deg, sample displacement +-0.1 mm, TCH widths,
    Chebyshev background, a weak amorphous hump (0-0.1), Poisson counts at 1e3-1e5 at the
    strongest point. No preferred orientation: it needs each phase's Laue rotations, which
    a structure outside a store does not carry.
    """
    base = base or ProfileConfig()
    instrument = InstrumentConfig(
        sample_displacement_mm=(-0.1, 0.1),
        widths=TCHWidthConfig(),
        chebyshev_background=ChebyshevBackgroundConfig(),
        amorphous_hump=AmorphousHumpConfig(height=(0.0, 0.1)),
        counting_noise=CountingNoiseConfig(max_counts=(1e3, 1e5)),
    )
    return base.model_copy(
        update={"ka_doublet": True, "zero_shift_deg": (-0.05, 0.05), "instrument": instrument}
    )


# --- the structures ------------------------------------------------------------------------


def manifest_structures(manifests: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every row of the subsets' manifests, with ``subset``, ``material_id`` and ``structure``.

    Args:
        manifests: ``{subset name: its manifest}`` (``cod_id`` and ``structure_json``).
    """
    frames = []
    for name, manifest in manifests.items():
        if "structure_json" not in manifest.columns:
            raise ValueError(f"manifest of {name!r} has no structure_json column")
        frame = manifest.copy()
        frame["subset"] = name
        id_column = "cod_id" if "cod_id" in frame.columns else "material_id"
        frame["material_id"] = frame[id_column].astype(str)
        frames.append(frame)
    if not frames:
        raise ValueError("no manifests given")
    out = pd.concat(frames, ignore_index=True)
    out["structure"] = [Structure.from_dict(json.loads(s)) for s in out["structure_json"]]
    return out


def deduplicate_structures(
    frame: pd.DataFrame, matcher: StructureMatcher | None = None
) -> pd.DataFrame:
    """One row per distinct structure, across subsets.

    Rows with the same ``material_id`` are one; then, within each ``reduced_formula`` (only
    the same composition can match), a structure that pymatgen's ``StructureMatcher``
    (default tolerances) matches to an earlier one is dropped. The kept row (the first, in
    ``material_id`` order) gets ``subsets`` (the subsets that held it or a match, comma-joined)
    and ``duplicates`` (the dropped ids, comma-joined).
    """
    matcher = matcher or StructureMatcher()
    frame = frame.sort_values(["material_id", "subset"], kind="stable")
    by_id: dict[str, list[str]] = {}
    first: dict[str, int] = {}
    for i, (mid, subset) in enumerate(zip(frame["material_id"], frame["subset"], strict=True)):
        by_id.setdefault(mid, [])
        if subset not in by_id[mid]:
            by_id[mid].append(subset)
        first.setdefault(mid, i)
    unique = frame.iloc[sorted(first.values())].reset_index(drop=True)
    kept: list[int] = []
    subsets: dict[int, list[str]] = {}
    merged: dict[int, list[str]] = {}
    formula = unique["reduced_formula"] if "reduced_formula" in unique else None
    if formula is None:
        formula = pd.Series([s.composition.reduced_formula for s in unique["structure"]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _, group in unique.groupby(formula.to_numpy(), sort=False):
            representatives: list[int] = []
            for i in group.index:
                mid = unique.at[i, "material_id"]
                match = next(
                    (
                        r
                        for r in representatives
                        if matcher.fit(unique.at[r, "structure"], unique.at[i, "structure"])
                    ),
                    None,
                )
                if match is None:
                    representatives.append(i)
                    kept.append(i)
                    subsets[i] = list(by_id[mid])
                    merged[i] = []
                else:
                    subsets[match] += [s for s in by_id[mid] if s not in subsets[match]]
                    merged[match].append(mid)
    out = unique.loc[sorted(kept)].copy()
    out["subsets"] = [",".join(sorted(subsets[i])) for i in out.index]
    out["duplicates"] = [",".join(merged[i]) for i in out.index]
    return out.reset_index(drop=True)


def prototype_key(space_group_number: int, letters: str) -> str:
    """A structure's prototype: ``"225:a,b"`` (space group, sorted Wyckoff letters)."""
    return f"{int(space_group_number)}:{letters}"


def label_structures(frame: pd.DataFrame) -> pd.DataFrame:
    """Space group, crystal and lattice system, Wyckoff letters and prototype from spglib.

    With the project's tolerances (:func:`~xrdpipe.structures.symmetry.analyse_symmetry`,
    :func:`~xrdpipe.structures.symmetry.wyckoff_letters`); a structure spglib cannot analyse
    is dropped (returned frame's ``attrs["dropped"]`` lists it with the reason).
    """
    rows, dropped = [], {}
    for i, structure in enumerate(frame["structure"]):
        try:
            info = analyse_symmetry(structure)
            letters = wyckoff_letters(structure)
        except StructureError as exc:
            dropped[str(frame["material_id"].iloc[i])] = str(exc)
            continue
        rows.append(
            {
                "index": i,
                "space_group_number": info.space_group_number,
                "space_group_symbol": info.space_group_symbol,
                "crystal_system": info.crystal_system,
                "lattice_system": info.lattice_system,
                "wyckoff_letters": letters,
                "prototype": prototype_key(info.space_group_number, letters),
            }
        )
    labels = pd.DataFrame(rows).set_index("index")
    out = frame.drop(columns=[c for c in labels.columns if c in frame.columns])
    out = out.iloc[labels.index].reset_index(drop=True).join(labels.reset_index(drop=True))
    out.attrs["dropped"] = dropped
    return out


def unseen_prototypes(test: pd.DataFrame, training_manifest: pd.DataFrame) -> np.ndarray:
    """True for each test structure whose prototype never occurs in the training manifest.

    The training manifest's prototype is ``space_group_number`` with
    ``spglib_wyckoff_letters`` (synthetic manifests) or ``wyckoff_letters``.
    """
    column = next(
        (c for c in ("spglib_wyckoff_letters", "wyckoff_letters") if c in training_manifest),
        None,
    )
    if column is None:
        raise ValueError(
            "the training manifest has no spglib_wyckoff_letters or wyckoff_letters column "
            f"(columns: {list(training_manifest.columns)})"
        )
    seen = {
        prototype_key(n, w)
        for n, w in zip(
            training_manifest["space_group_number"], training_manifest[column], strict=True
        )
    }
    return np.array([p not in seen for p in test["prototype"]], dtype=bool)


# --- rendering -----------------------------------------------------------------------------


@dataclass
class PeakLists:
    """Unstrained peak lists of structures, padded to one width (rows in structure order)."""

    two_theta: np.ndarray
    intensity: np.ndarray
    d_spacing: np.ndarray
    mask: np.ndarray

    def __len__(self) -> int:
        return int(self.two_theta.shape[0])


def structure_peaks(
    structures: Sequence[Structure], profile: ProfileConfig, margin_deg: float = 1.0
) -> PeakLists:
    """Each structure's unstrained peaks (``simulate_peaks``) over the profile's range.

    Computed at K-alpha1 when the profile renders doublets (the renderer places K-alpha2 from
    the d-spacing), with ``margin_deg`` beyond both ends for the shifts.
    """
    wavelength = profile.ka1
    rng = (max(profile.two_theta_min - margin_deg, 0.5), profile.two_theta_max + margin_deg)
    tables = [simulate_peaks(s, np.zeros((3, 3)), wavelength, rng) for s in structures]
    width = max(max(t.max_peaks for t in tables), 1)
    out = {k: np.zeros((len(tables), width)) for k in ("two_theta", "intensity", "d_spacing")}
    mask = np.zeros((len(tables), width), dtype=bool)
    for i, t in enumerate(tables):
        p = t.max_peaks
        out["two_theta"][i, :p] = t.two_theta[0]
        out["intensity"][i, :p] = t.intensity[0]
        out["d_spacing"][i, :p] = t.d_spacing[0]
        mask[i, :p] = t.mask[0]
    return PeakLists(out["two_theta"], out["intensity"], out["d_spacing"], mask)


def mixture_peaks(
    peaks: PeakLists,
    n_mixtures: int,
    seed: int = 0,
    phases: tuple[int, int] = (2, 3),
    min_fraction: float = 0.2,
) -> tuple[PeakLists, np.ndarray, np.ndarray, np.ndarray]:
    """Random mixtures of distinct peak lists, each phase >= ``min_fraction`` of the intensity.

    Fractions are uniform on the simplex restricted to ``>= min_fraction`` (the uniform draw
    ``min_fraction + (1 - k min_fraction) * Dirichlet(1)``); each phase's peaks are scaled so
    that its summed intensity over the range is its fraction.

    Returns:
        ``(peaks, weights, phase_index, members)``: the concatenated peak lists, per-peak
        weights and phases ``(n_mixtures, P)``, and the structure indices ``(n_mixtures, 3)``
        (``-1`` for an absent third phase).
    """
    lo, hi = phases
    if not 2 <= lo <= hi <= 3 or len(peaks) < hi or not 0.0 <= min_fraction * hi <= 1.0:
        raise ValueError(f"phases {phases} must be within 2-3, distinct and feasible")
    rng = np.random.default_rng(seed)
    p = peaks.two_theta.shape[1]
    shape = (n_mixtures, 3 * p)
    tt, inten, d = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    mask = np.zeros(shape, dtype=bool)
    weights = np.zeros(shape)
    index = np.zeros(shape, dtype=np.int64)
    members = -np.ones((n_mixtures, 3), dtype=np.int64)
    totals = (peaks.intensity * peaks.mask).sum(axis=1)
    for i in range(n_mixtures):
        k = int(rng.integers(lo, hi + 1))
        chosen = rng.choice(np.flatnonzero(totals > 0), k, replace=False)
        fractions = min_fraction + (1.0 - k * min_fraction) * rng.dirichlet(np.ones(k))
        members[i, :k] = chosen
        for j, (m, f) in enumerate(zip(chosen, fractions, strict=True)):
            cols = slice(j * p, (j + 1) * p)
            tt[i, cols] = peaks.two_theta[m]
            inten[i, cols] = peaks.intensity[m]
            d[i, cols] = peaks.d_spacing[m]
            mask[i, cols] = peaks.mask[m]
            weights[i, cols] = f / totals[m]
            index[i, cols] = j
    return PeakLists(tt, inten, d, mask), weights, index, members


def evaluation_generator(
    seed: int, *parts: int, stream: int = EVALUATION_STREAM
) -> torch.Generator:
    """A CPU generator on a stream (default the evaluation's, :data:`EVALUATION_STREAM`)."""
    from xrdpipe.training.seeds import seed_for

    return torch.Generator().manual_seed(seed_for(stream, seed, *parts))


def render_structures(
    peaks: PeakLists,
    profile: ProfileConfig,
    draws: int = 1,
    seed: int = 0,
    batch: int = 256,
    weights: np.ndarray | None = None,
    phase_index: np.ndarray | None = None,
    stream: int = EVALUATION_STREAM,
) -> np.ndarray:
    """``draws`` measured-like profiles per peak list: ``(len(peaks) * draws, n_points)``.

    Row ``i * draws + d`` is draw ``d`` of peak list ``i``. The draws of batch ``b`` come from
    ``evaluation_generator(seed, b)``: the same seed gives the same patterns.

    Args:
        peaks: the peak lists (one per pattern; a mixture's phases concatenated).
        profile: the rendering (``measured_like_profile``).
        draws: patterns per peak list.
        seed: evaluation seed.
        batch: patterns per render call.
        weights: per-peak intensity factors ``(n, P)`` (a mixture's phase weights).
        phase_index: per-peak phase ``(n, P)`` (a mixture's phases; widths drawn per phase).
        stream: the seed root (a baseline's training renders use another than the test's).
    """
    rows = np.repeat(np.arange(len(peaks)), draws)
    out = []
    for b, start in enumerate(range(0, len(rows), batch)):
        idx = rows[start : start + batch]
        used = np.flatnonzero(peaks.mask[idx].any(axis=0))
        cols = slice(0, int(used.max()) + 1 if used.size else 1)  # padding columns dropped
        intensity = peaks.intensity[idx, cols] * (1.0 if weights is None else weights[idx, cols])
        phases = None if phase_index is None else torch.from_numpy(phase_index[idx, cols]).long()
        rendered = render_profiles(
            peaks.two_theta[idx, cols],
            intensity,
            peaks.mask[idx, cols],
            profile,
            evaluation_generator(seed, b, stream=stream),
            "cpu",
            profile.ka1,
            d_spacing=peaks.d_spacing[idx, cols],
            phase_index=phases,
        )
        out.append(rendered.numpy())
    return np.concatenate(out) if out else np.zeros((0, profile.n_points), np.float32)


def rendered_scans(profiles: np.ndarray, profile: ProfileConfig) -> list[MeasuredPattern]:
    """Rendered rows as measured patterns on the profile's grid (for a predictor's ``prepare``)."""
    tt = np.linspace(profile.two_theta_min, profile.two_theta_max, profile.n_points)
    return [
        MeasuredPattern(
            f"render-{i}",
            tt,
            np.asarray(y, np.float64) + 1e-9,
            profile.ka1,
            profile.ka2,
            profile.ka2_ratio,
            "user",
        )
        for i, y in enumerate(profiles)
    ]


def prepare_renders(
    profiles: np.ndarray, profile: ProfileConfig, background: bool = True
) -> np.ndarray:
    """``predict``'s preparation of rendered scans on their own grid (background, min-max).

    :func:`~xrdpipe.readers.prepare_pattern` of each row of :func:`rendered_scans`, float32.
    """
    grid = ModelGrid(
        profile.two_theta_min, profile.two_theta_max, profile.n_points, profile.ka1, True
    )
    out = np.empty(profiles.shape, dtype=np.float32)
    for i, pattern in enumerate(rendered_scans(profiles, profile)):
        out[i] = prepare_pattern(pattern, grid, background=background).x
    return out


# --- metrics -------------------------------------------------------------------------------


def classification_report(
    y_true: Sequence[int], y_pred: Sequence[int], class_names: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class recall and support, confusion matrix.

    Balanced accuracy is the mean recall over the classes present in ``y_true``
    (scikit-learn's ``balanced_accuracy_score``); macro-F1 averages over every class of
    ``class_names`` (``f1_score(labels=range(C), average="macro", zero_division=0)``).
    """
    labels = list(range(len(class_names)))
    m = classification_metrics(y_true, y_pred, labels, class_names)
    support = m["confusion"].sum(axis=1)
    return {
        "n": int(len(y_true)),
        "accuracy": m["accuracy"],
        "balanced_accuracy": m["balanced_accuracy"],
        "macro_f1": m["macro_f1"],
        "recall": m["recall"],
        "support": dict(zip(m["recall"], support.tolist(), strict=True)),
        "confusion": m["confusion"].tolist(),
        "classes": list(class_names),
    }


def top_k_accuracy(y_true: Sequence[int], scores: np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the ``k`` highest scores (ties: stable)."""
    scores = np.asarray(scores)
    y = np.asarray(y_true)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean()) if len(y) else 0.0


def paired_bootstrap(
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    groups: Sequence[int] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same patterns, with a paired interval.

    Each bootstrap replicate resamples groups (structures: all draws of a structure move
    together; default each pattern its own group) with replacement and recomputes both
    accuracies on the same replicate; the interval is the percentile interval of the
    differences.
    """
    y = np.asarray(y_true)
    a = (np.asarray(pred_a) == y).astype(np.float64)
    b = (np.asarray(pred_b) == y).astype(np.float64)
    if not (len(a) == len(b) == len(y)):
        raise ValueError(f"lengths differ: y {len(y)}, a {len(a)}, b {len(b)}")
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    _, g = np.unique(g, return_inverse=True)
    n_groups = int(g.max()) + 1 if len(g) else 0
    sum_a = np.bincount(g, weights=a, minlength=n_groups)
    sum_b = np.bincount(g, weights=b, minlength=n_groups)
    count = np.bincount(g, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_groups, (n_boot, n_groups))
    weight = np.stack([np.bincount(p, minlength=n_groups) for p in picks])
    diffs = (weight @ sum_a - weight @ sum_b) / (weight @ count)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return Interval(float(a.mean() - b.mean()), float(low), float(high), level)
