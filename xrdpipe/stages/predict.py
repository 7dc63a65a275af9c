"""Predictions for measured patterns with registered models: ``xrdpipe predict FILE...``.

1. Models: a registered model ``name@alias`` (default ``champion``; if that alias does not
   exist, ``candidate`` with a printed notice) or ``name`` version ``N``, read through
   :mod:`xrdpipe.tracking` (the only MLflow seam): the logged pt2 model (probabilities out),
   the run's ``config.yaml`` (grid, wavelength, classes or materials) and its safetensors
   checkpoint (the full network, for the a-CNN's class activation map).
2. Ensemble (uncertainty): the chosen version plus the other versions of the same registered
   model that agree on the task and its outputs (version tags ``task`` and ``materials`` for
   the phase-fraction model, ``task``, ``class_names``, ``protocol`` and ``variant`` for a
   classifier), on the input grid, and differ in the training seed: the newest version of
   each other seed, up to ``max_members`` in all. Reported: the members' mean
   probabilities/fractions and their standard deviation (population std, ``ddof=0``); with
   one member the std is 0 and a note says there is no ensemble.
3. Per file: read (:mod:`xrdpipe.readers`), put on each model's grid (Bragg conversion,
   interpolation, background, min-max normalisation), predict, plot (measured pattern
   on the grid, the a-CNN's CAM for its top class, the reference peak positions of the phases
   with a predicted fraction >= :data:`SHOWN_FRACTION` from the store's ``reference`` split,
   omitted with a note when the store is not there).

Background (``background=None``, the default): subtracted for the a-CNN, whose training
profiles are background-free (without it, a measured background pushed every simulated test
file towards one class), and kept for the phase-fraction CNN, which was trained with random
backgrounds; ``True``/``False`` (``--background``/``--no-background``) forces it for every
model.

Calibration and the one-phase flag (classifiers): where the checkpoint's metadata (or the
run's ``config.yaml``) holds ``calibration: {temperature: T, flag_rule: {...}}`` (fitted on
validation, :mod:`xrdpipe.evaluation.calibration` and :mod:`xrdpipe.evaluation.ood`), each
member's probabilities are tempered (``p ** (1 / T)`` renormalised, the same as
``softmax(z / T)``) before the ensemble mean, and the pattern is flagged "not one phase of the
training distribution" when it fails a test of the rule (too few sharp peaks, too many peaks,
too low a calibrated top probability, or, where the run saved a mixture detector beside its
checkpoint, too high a ``p(mixture)``); the reasons are printed. Without them the
probabilities are the model's own and a note says they are not calibrated.

Indexing (lattice- and crystal-system classifiers, on by default): the file's lines are
indexed (:mod:`xrdpipe.indexing`: cubic, tetragonal, hexagonal, rhombohedral and
orthorhombic cells by de Wolff's figure of merit) and each member's calibrated probabilities
are joined with the outcome through the packaged outcome table (``docs/indexing.md``); the
cell is printed and its lines drawn. The one-phase flag keeps testing the classifier's own
probabilities, on which its rule was fitted.

A batch goes on past a bad file; :func:`predict_files` returns the failures beside the
results and the CLI lists them and exits with code 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xrdpipe.errors import XrdpipeError
from xrdpipe.readers import ModelGrid, PreparedPattern, prepare_pattern, read_pattern

DEFAULT_ALIAS = "champion"
FALLBACK_ALIAS = "candidate"
MAX_MEMBERS = 5
"""Most ensemble members (the chosen version included)."""
SHOWN_FRACTION = 0.05
"""Phases with a mean predicted fraction at least this large get reference peaks drawn."""
BATCH = 256
"""Patterns per forward pass."""
IDENTITY_TAGS = {
    "phase-fractions": ("task", "materials"),
    "classifier": ("task", "class_names", "protocol", "variant"),
}
"""Version tags that must match the chosen version's for another version to join the ensemble."""


@dataclass
class Member:
    """One registered model version, loaded."""

    version: str
    seed: str | None
    module: Any  # the logged probability model (torch.nn.Module)
    network: Any  # the checkpoint's full network (ACNN or PhaseCNN)


@dataclass
class ModelEnsemble:
    """A registered model's chosen version and its seed siblings.

    Attributes:
        name: the registered model.
        kind: ``classifier`` or ``phase-fractions``.
        task: ``lattice-system``, ``crystal-system``, ..., ``phase-fractions``.
        chosen: the version picked by alias or number.
        how: how it was picked (``@champion``, ``@candidate (no champion)``, ``version 3``).
        labels: output names (class names, or COD ids of the materials).
        formulas: formulas of the materials (phase fractions), else empty.
        names: a phase set's phase names (file stems), in output order, else empty.
        grid: the input grid and wavelength.
        members: the loaded members, chosen first.
        config: the chosen run's full configuration.
        notes: what was decided while loading.
    """

    name: str
    kind: str
    task: str
    chosen: str
    how: str
    labels: list[str]
    formulas: list[str]
    grid: ModelGrid
    members: list[Member]
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    predictor: Any = None  # ClassifierPredictor of a measured-like classifier (its preprocessing)
    outcomes: Any = None  # OutcomeTable joining indexing with this classifier (None: not joined)
    detector: Any = None  # the classifier's mixture detector (the flag's ``mixture`` test)
    _references: dict[str, np.ndarray] | None = None
    _reference_note: str | None = None

    @property
    def temperature(self) -> float | None:
        """The calibration temperature stored with the model (``None``: not calibrated)."""
        t = self.calibration.get("temperature")
        return None if t is None else float(t)

    def predict(
        self, x: np.ndarray, outcomes: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over members of the outputs for patterns ``(B, n_points)``.

        A classifier's member probabilities are tempered first when a temperature is stored,
        then, with the patterns' indexing ``outcomes`` and an outcome table, joined with them
        (:func:`xrdpipe.indexing.combine`).
        """
        return self.summarise(self.member_outputs(x), outcomes)

    def member_outputs(self, x: np.ndarray) -> list[np.ndarray]:
        """Each member's outputs for patterns ``(B, n_points)`` (a classifier's tempered)."""
        from xrdpipe.evaluation.calibration import calibrated_probabilities
        from xrdpipe.training.inference import predict_batched

        outputs = [predict_batched(m.module, x, BATCH).numpy() for m in self.members]
        if self.kind == "classifier" and self.temperature is not None:
            t = self.temperature
            outputs = [calibrated_probabilities(o, t, are_logits=False) for o in outputs]
        return outputs

    def summarise(
        self, outputs: list[np.ndarray], outcomes: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over members of :meth:`member_outputs`, joined with ``outcomes``."""
        if outcomes is not None and self.outcomes is not None:
            from xrdpipe.indexing import combine

            outputs = [combine(o, outcomes, self.outcomes, self.labels) for o in outputs]
        stacked = np.stack(outputs)
        return stacked.mean(axis=0), stacked.std(axis=0)

    def one_phase_flag(self, x: np.ndarray, mean: np.ndarray) -> list[str] | None:
        """Why pattern ``x`` (prepared) does not look like one phase; ``None``: no rule stored."""
        from xrdpipe.evaluation.ood import FlagRule, one_phase_scores

        rule = self.calibration.get("flag_rule")
        if self.kind != "classifier" or not rule:
            return None
        step = (self.grid.two_theta_max - self.grid.two_theta_min) / (self.grid.n_points - 1)
        mixture = None
        if self.detector is not None:
            from xrdpipe.training.mixture_detector import mixture_probability

            mixture = mixture_probability(self.detector, x[None])
        scores = one_phase_scores(x[None], step, probabilities=mean[None], mixture=mixture)
        return FlagRule.from_dict(rule).reasons(scores)[0]

    def cam(self, x: np.ndarray, class_index: int) -> np.ndarray | None:
        """The chosen a-CNN's class activation map of ``class_index`` (``None`` otherwise)."""
        import torch

        from xrdpipe.models.acnn import ACNN, class_activation_maps

        network = self.members[0].network
        if not isinstance(network, ACNN):
            return None
        maps = class_activation_maps(network, torch.from_numpy(x[None]), class_index)
        return maps[0].numpy()

    def reference_peaks(self) -> tuple[dict[str, np.ndarray], str | None]:
        """Two-theta of each material's unstrained (``reference``) peaks.

        Read from the store the model was trained on; ``({}, why)`` when it cannot be read.
        """
        if self._references is None:
            from xrdpipe.patterns.datasets import load_peaks

            store_path = (self.config.get("store") or {}).get("store_path")
            try:
                if not store_path or not Path(store_path).exists():
                    raise XrdpipeError(f"training store {store_path} is not on this machine")
                peaks = load_peaks(store_path, "reference", self.labels)
                tt = peaks.peaks.two_theta.cpu().numpy()[:, 0]
                mask = peaks.peaks.peak_mask.cpu().numpy()[:, 0]
                self._references = {c: tt[i][mask[i]] for i, c in enumerate(self.labels)}
            except (XrdpipeError, OSError, KeyError, ValueError) as exc:
                self._references = {}
                self._reference_note = f"reference peaks omitted: {exc}"
        return self._references, self._reference_note

    def describe(self) -> str:
        """``name v3 @champion, 2 members (seeds 0, 1)``."""
        seeds = ", ".join(str(m.seed) for m in self.members)
        n = len(self.members)
        ensemble = f"{n} members (seeds {seeds})" if n > 1 else "1 member: std 0, no ensemble"
        return f"{self.name} v{self.chosen} {self.how}, {ensemble}"


def _grid(config: dict[str, Any]) -> ModelGrid:
    from xrdpipe.training.classifier_inference import grid_of

    return grid_of(config)


def _outputs(
    config: dict[str, Any], sidecar: dict[str, Any]
) -> tuple[str, list[str], list[str], list[str]]:
    """``(kind, labels, formulas, names)``: names are a phase set's phase names, else empty."""
    data = config.get("data") or {}
    meta = sidecar.get("metadata") or {}
    if config.get("task") == "phase-fractions":
        labels = [str(m) for m in (meta.get("materials") or data.get("materials") or [])]
        formulas = [str(f) for f in meta.get("formulas") or []]
        names = [str(n) for n in (meta.get("names") or data.get("names") or [])]
        return "phase-fractions", labels, formulas, names
    labels = [str(c) for c in (meta.get("class_names") or data.get("class_names") or [])]
    return "classifier", labels, [], []


def load_model_ensemble(
    name: str,
    alias: str = DEFAULT_ALIAS,
    version: str | int | None = None,
    *,
    ensemble: bool = True,
    max_members: int = MAX_MEMBERS,
) -> ModelEnsemble:
    """Load a registered model (and its seed siblings) for prediction.

    Call :func:`xrdpipe.tracking.configure` first.

    Args:
        name: the registered model, e.g. ``xrdpipe-lattice-system-acnn``.
        alias: the alias to pick (``champion`` falls back to ``candidate``).
        version: a version number instead of the alias.
        ensemble: add the seed siblings (see the module docstring).
        max_members: most members.

    Raises:
        xrdpipe.tracking.ModelLookupError: unknown model, alias or version.
    """
    from xrdpipe import tracking

    notes: list[str] = []
    if version is not None:
        chosen = tracking.registered_version(name, version=version)
        how = f"version {version}"
    else:
        chosen = tracking.registered_version(name, alias=alias)
        how = f"@{alias}"
        if chosen is None and alias == DEFAULT_ALIAS:
            chosen = tracking.registered_version(name, alias=FALLBACK_ALIAS)
            how = f"@{FALLBACK_ALIAS}"
            notes.append(
                f"{name} has no '@{DEFAULT_ALIAS}' yet: using '@{FALLBACK_ALIAS}' "
                f"(version {chosen.version if chosen else '?'})"
            )
    if chosen is None:
        versions = tracking.registered_versions(name)
        aliases = sorted({a for v in versions for a in v.aliases})
        raise tracking.ModelLookupError(
            f"registered model {name!r} has no {how.lstrip('@')!r}; versions "
            f"{[v.version for v in versions]}, aliases {aliases}"
        )
    config, network, sidecar = tracking.model_metadata(chosen.run_id)
    kind, labels, formulas, names = _outputs(config, sidecar)
    calibration = dict(
        (sidecar.get("metadata") or {}).get("calibration") or config.get("calibration") or {}
    )
    grid = _grid(config)
    members = [
        Member(chosen.version, chosen.seed, tracking.load_version(name, chosen.version), network)
    ]
    if ensemble:
        keys = IDENTITY_TAGS[kind]
        seeds = {chosen.seed}
        for other in tracking.registered_versions(name):
            if len(members) >= max_members:
                break
            if other.version == chosen.version or other.seed in seeds or other.seed is None:
                continue
            if any(other.tags.get(k) != chosen.tags.get(k) for k in keys):
                continue
            other_config, other_net, _ = tracking.model_metadata(other.run_id)
            if _grid(other_config) != grid:
                notes.append(f"version {other.version} skipped: another input grid")
                continue
            seeds.add(other.seed)
            members.append(
                Member(
                    other.version, other.seed, tracking.load_version(name, other.version), other_net
                )
            )
    predictor = None
    if kind == "classifier" and config.get("preprocess"):  # measured-like training
        from xrdpipe.training.classifier_inference import ClassifierPredictor

        predictor = ClassifierPredictor(
            network, labels, str(config.get("task", "")).replace("-", "_"), grid,
            background=False, metadata=sidecar.get("metadata") or {},
        )  # fmt: skip
    outcomes = None
    if kind == "classifier":
        from xrdpipe.indexing import packaged_table

        table = packaged_table(str(config.get("task", "")).replace("-", "_"))
        outcomes = table if table is not None and set(labels) <= set(table.counts) else None
    return ModelEnsemble(
        predictor=predictor,
        outcomes=outcomes,
        detector=sidecar.get("mixture_detector") if kind == "classifier" else None,
        name=name,
        kind=kind,
        task=str(config.get("task", kind)),
        chosen=chosen.version,
        how=how,
        labels=labels,
        formulas=formulas,
        names=names,
        grid=grid,
        members=members,
        config=config,
        notes=notes,
        calibration=calibration,
    )


# --- one file ------------------------------------------------------------------------------


@dataclass
class ModelOutput:
    """One model's prediction for one file."""

    model: str
    kind: str
    task: str
    labels: list[str]
    formulas: list[str]
    mean: np.ndarray
    std: np.ndarray
    n_members: int
    prepared: PreparedPattern
    names: list[str] = field(default_factory=list)
    calibrated: bool = False
    flag: list[str] | None = None
    indexing: Any = None  # the file's ScanIndexing where it was joined with this classifier
    systems: dict[str, dict[str, float]] = field(default_factory=dict)  # a space-group model's

    def display(self, i: int) -> str:
        """Output ``i`` for people: a phase set's name, else ``<id> <formula>`` (or a class)."""
        if self.names:
            return self.names[i]
        return f"{self.labels[i]} {self.formulas[i]}".strip() if self.formulas else self.labels[i]

    def ranked(self) -> list[int]:
        """Output indices, largest mean first."""
        return [int(i) for i in np.argsort(-self.mean, kind="stable")]

    def as_dict(self) -> dict[str, Any]:
        names = [self.display(i) for i in range(len(self.labels))]
        return {
            "model": self.model,
            "task": self.task,
            "members": self.n_members,
            "outputs": {
                n: {"mean": float(self.mean[i]), "std": float(self.std[i])}
                for i, n in enumerate(names)
            },
            "top": names[self.ranked()[0]],
            "notes": list(self.prepared.notes),
            **(
                {}
                if self.kind != "classifier"
                else {
                    "calibrated": self.calibrated,
                    "one_phase_flag": self.flag,
                    "indexing": None if self.indexing is None else self.indexing.as_dict(),
                    **({"systems": self.systems} if self.systems else {}),
                }
            ),
        }


@dataclass
class FilePrediction:
    """Everything predicted for one measured file."""

    path: Path
    outputs: list[ModelOutput]
    notes: list[str]
    plot: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "predictions": [o.as_dict() for o in self.outputs],
            "notes": self.notes,
            "plot": None if self.plot is None else str(self.plot),
        }


def system_sums(model: ModelEnsemble, mean: np.ndarray) -> dict[str, dict[str, float]]:
    """A space-group classifier's crystal- and lattice-system probabilities (sums of groups)."""
    if model.kind != "classifier" or model.task.replace("-", "_") != "space_group":
        return {}
    from xrdpipe.structures.hierarchy import SYSTEMS, system_probabilities

    sums = {s: system_probabilities(mean[None], model.labels, s)[0].tolist() for s in SYSTEMS}
    return {s: dict(zip(SYSTEMS[s], p, strict=True)) for s, p in sums.items()}


def predict_pattern(
    path: str | Path,
    models: Sequence[ModelEnsemble],
    *,
    wavelength: float | None = None,
    background: bool | None = None,
    allow_partial: bool = False,
    indexing: bool = True,
) -> FilePrediction:
    """Read one file and predict it with every model.

    With ``indexing``, a classifier whose task has a packaged outcome table (lattice or
    crystal system) is joined with the file's indexing (:func:`xrdpipe.indexing.index_scan`,
    K-alpha1 and K-alpha2 as :func:`xrdpipe.indexing.scan_wavelengths` decides).

    Raises:
        MeasuredPatternError: the file cannot be read or does not fit a model's grid.
    """
    pattern = read_pattern(path, wavelength)
    outputs, found, notes = [], None, list(pattern.notes)
    if indexing and any(m.outcomes is not None for m in models):
        from xrdpipe.indexing import index_scan, scan_wavelengths

        ka1, ka2, ratio, note = scan_wavelengths(
            pattern.ka1 or models[0].grid.wavelength, pattern.ka2, pattern.ka2_ratio
        )
        found = index_scan(pattern.two_theta, pattern.intensity, ka1, ka2, ratio)
        notes += [note] if note else []
    for model in models:
        if model.predictor is not None and background is None:  # as its training rendered
            prepared = model.predictor.prepare_full(pattern, allow_partial)
        else:
            subtract = model.kind == "classifier" if background is None else background
            prepared = prepare_pattern(
                pattern, model.grid, background=subtract, allow_partial=allow_partial
            )
        joined = found if model.outcomes is not None else None
        members = model.member_outputs(prepared.x[None])  # one forward pass for both answers
        mean, std = model.summarise(members, None if joined is None else [joined.outcome])
        own = mean if joined is None else model.summarise(members)[0]  # the flag's input
        outputs.append(
            ModelOutput(
                model.describe(),
                model.kind,
                model.task,
                model.labels,
                model.formulas,
                mean[0],
                std[0],
                len(model.members),
                prepared,
                model.names,
                calibrated=model.temperature is not None,
                flag=model.one_phase_flag(prepared.x, own[0]),
                indexing=joined,
                systems=system_sums(model, mean[0]),
            )
        )
    return FilePrediction(Path(path), outputs, notes)


def format_prediction(result: FilePrediction, top: int = 5) -> str:
    """A text table of one file's predictions."""
    lines = [str(result.path)]
    lines += [f"  note: {n}" for n in result.notes]
    for out in result.outputs:
        p = out.prepared
        lines.append(
            f"  {out.task}: {out.model}"
            f"\n    grid {p.measured_range[0]:.2f}-{p.measured_range[1]:.2f} deg measured, "
            f"{p.file_wavelength:.5f} A -> {p.model_wavelength:.5f} A"
        )
        lines += [f"    note: {n}" for n in p.notes]
        if out.kind == "classifier":
            if not out.calibrated:
                lines.append("    note: probabilities not calibrated (no temperature stored)")
            if out.flag:
                lines.append(
                    "    FLAG: does not look like one phase of the training data ("
                    + "; ".join(out.flag)
                    + ")"
                )
            elif out.flag is not None:
                lines.append("    one-phase check: passed")
            if out.indexing is not None:
                lines.append(f"    indexing: {out.indexing.describe()} (joined)")
            for system, p in out.systems.items():  # a space-group model's sums
                best = max(p, key=p.__getitem__)
                name = system.replace("_", " ")
                lines.append(f"    {name}: {best} {p[best]:.3f} (sum of groups)")
        phase = "phase" if out.names else "phase (COD id, formula)"
        header = phase if out.kind == "phase-fractions" else "class"
        lines.append(f"    {header:<34} {'mean':>7} {'std':>7}")
        order = out.ranked()
        shown = order if out.kind == "phase-fractions" else order[:top]
        for i in shown:
            label = out.display(i)
            lines.append(f"    {label:<34} {out.mean[i]:7.3f} {out.std[i]:7.3f}")
    if result.plot is not None:
        lines.append(f"  plot: {result.plot}")
    return "\n".join(lines)


def predict_files(
    paths: Sequence[str | Path],
    models: Sequence[ModelEnsemble],
    *,
    wavelength: float | None = None,
    background: bool | None = None,
    allow_partial: bool = False,
    out_dir: Path | None = None,
    on_result: Any = None,
    indexing: bool = True,
) -> tuple[list[FilePrediction], dict[str, str]]:
    """Predict a batch of files, going on past bad ones.

    Args:
        paths: measured files.
        models: loaded ensembles (a classifier, a phase-fraction model, or both).
        wavelength: angstrom, for files that do not carry one.
        background: subtract a rolling-minimum background (``None``: for classifiers only).
        allow_partial: accept patterns covering part of a model's range.
        out_dir: where ``<stem>.png`` plots and ``predictions.json`` go (``None``: nowhere).
        indexing: join classifiers with each file's indexing (:func:`predict_pattern`).
        on_result: called with each :class:`FilePrediction` or ``(path, error)``.

    Returns:
        ``(results, failures)``, failures mapping each bad file to its error message.
    """
    results: list[FilePrediction] = []
    failures: dict[str, str] = {}
    for path in paths:
        try:
            result = predict_pattern(
                path,
                models,
                wavelength=wavelength,
                background=background,
                allow_partial=allow_partial,
                indexing=indexing,
            )
            if out_dir is not None:
                from xrdpipe.stages.predict_plot import plot_prediction

                result.plot, notes = plot_prediction(
                    result, models, Path(out_dir) / f"{Path(path).stem}.png"
                )
                result.notes += notes
        except XrdpipeError as exc:
            failures[str(path)] = str(exc)
            if on_result is not None:
                on_result((str(path), str(exc)))
            continue
        results.append(result)
        if on_result is not None:
            on_result(result)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        summary = {"results": [r.as_dict() for r in results], "failed": failures}
        (Path(out_dir) / "predictions.json").write_text(json.dumps(summary, indent=2))
    return results, failures
