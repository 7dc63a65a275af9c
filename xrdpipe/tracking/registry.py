"""The model registry: promotion of a new version to ``champion``, and reading versions back.

:func:`promote_if_better` moves the alias ``champion``; the read-only part
(:func:`registered_versions`, :func:`registered_version`, :func:`load_version`,
:func:`model_metadata`, :func:`load_registered`) is what ``xrdpipe predict`` uses.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from xrdpipe.errors import XrdpipeError
from xrdpipe.models.checkpoints import MIXTURE_DETECTOR_ROLE, load_checkpoint, load_companion
from xrdpipe.tracking.runs import CANDIDATE_ALIAS


def load_registered(name: str, alias: str = CANDIDATE_ALIAS) -> nn.Module:
    """The registered model ``name@alias`` as a torch module (outputs probabilities)."""
    return mlflow.pytorch.load_model(f"models:/{name}@{alias}")


# --- promotion -----------------------------------------------------------------------------

CHAMPION_ALIAS = "champion"
"""Alias of the best version of a registered model on its test set (``xrdpipe predict``)."""
PROMOTION_STANDARD_ERRORS = 2.0
"""A candidate must beat the champion by more than this many standard errors."""


@dataclass(frozen=True)
class Promotion:
    """The outcome of comparing a new version with its registered model's champion."""

    name: str
    version: str
    promoted: bool
    reason: str
    candidate_value: float
    champion_version: str | None = None
    champion_value: float | None = None
    margin: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return dict(self.__dict__)


def promote_if_better(
    name: str,
    version: str,
    *,
    metric: str = "test_tvd_mean",
    sem_tag: str = "test_tvd_sem",
    lower_is_better: bool = True,
) -> Promotion:
    """Move the alias ``champion`` to ``version`` if it beats the champion on the same test set.

    The rule: no champion yet, or the same ``test_set_sha256`` version tag and a better
    ``metric`` (a version tag) by more than :data:`PROMOTION_STANDARD_ERRORS` standard errors
    of the difference, ``sqrt(sem_candidate^2 + sem_champion^2)`` (``sem_tag`` version tags).
    A champion scored on other test mixtures is never replaced silently: the outcome says so.
    The outcome is logged to the active run (tags and ``promotion.json``) when there is one.
    """
    client = MlflowClient()
    candidate = client.get_model_version(name, version)
    tags = dict(candidate.tags or {})
    value = float(tags[metric])
    sem = float(tags.get(sem_tag, 0.0))
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None:
        outcome = Promotion(name, version, True, "no champion yet", value)
    elif str(champion.version) == str(version):
        outcome = Promotion(name, version, True, "already champion", value, str(version), value)
    else:
        ctags = dict(champion.tags or {})
        cvalue = float(ctags.get(metric, "nan"))
        csem = float(ctags.get(sem_tag, 0.0))
        margin = PROMOTION_STANDARD_ERRORS * math.sqrt(sem**2 + csem**2)
        gain = (cvalue - value) if lower_is_better else (value - cvalue)
        if ctags.get("test_set_sha256") != tags.get("test_set_sha256"):
            outcome = Promotion(
                name, version, False, "champion was scored on other test mixtures",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
        elif gain > margin:
            outcome = Promotion(
                name, version, True, f"better by {gain:.4g} > {margin:.4g} (2 SE)",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
        else:
            outcome = Promotion(
                name, version, False, f"not better by more than 2 SE ({gain:.4g} <= {margin:.4g})",
                value, str(champion.version), cvalue, margin,
            )  # fmt: skip
    if outcome.promoted:
        client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    if mlflow.active_run() is not None:
        mlflow.set_tags(
            {"xrdpipe.promoted": str(outcome.promoted), "xrdpipe.promotion": outcome.reason}
        )
        mlflow.log_dict(outcome.as_dict(), "promotion.json")
    return outcome


# --- reading registered models back (``xrdpipe predict``) ----------------------------------


class ModelLookupError(XrdpipeError):
    """A registered model, alias, version or run artifact is not in the tracking store."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model, as the registry describes it.

    Attributes:
        name: the registered model.
        version: its version number, as a string.
        run_id: the run that logged it.
        tags: the version's tags (task, seed, materials or class names, ...).
        aliases: aliases pointing at it (``champion``, ``candidate``, ...).
        seed: the training seed (version tag ``seed``, else the run param ``args.seed``).
    """

    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    seed: str | None


def _describe(client: MlflowClient, mv: Any, aliases: tuple[str, ...]) -> RegisteredVersion:
    tags = dict(mv.tags or {})
    seed = tags.get("seed")
    if seed is None and mv.run_id:
        try:
            seed = client.get_run(mv.run_id).data.params.get("args.seed")
        except mlflow.exceptions.MlflowException:
            seed = None
    return RegisteredVersion(mv.name, str(mv.version), mv.run_id, tags, aliases, seed)


def registered_versions(name: str) -> list[RegisteredVersion]:
    """Every version of a registered model, newest first.

    Raises:
        ModelLookupError: no registered model of that name (lists the known names).
    """
    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        known = sorted(m.name for m in client.search_registered_models())
        raise ModelLookupError(
            f"no registered model {name!r} in {mlflow.get_tracking_uri()}; registered: {known}"
        ) from exc
    aliases: dict[str, list[str]] = {}
    for alias, number in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(number), []).append(alias)
    found = client.search_model_versions(f"name = '{name}'")
    return [
        _describe(client, mv, tuple(sorted(aliases.get(str(mv.version), ()))))
        for mv in sorted(found, key=lambda m: -int(m.version))
    ]


def registered_version(
    name: str, alias: str | None = None, version: str | int | None = None
) -> RegisteredVersion | None:
    """``name@alias`` or ``name/version``; ``None`` if that alias or version does not exist.

    Raises:
        ModelLookupError: no registered model of that name.
    """
    versions = registered_versions(name)
    if version is not None:
        return next((v for v in versions if v.version == str(version)), None)
    return next((v for v in versions if alias in v.aliases), None)


def load_version(name: str, version: str | int) -> nn.Module:
    """The logged (pt2, probability-output) model of ``name`` version ``version``."""
    try:
        return mlflow.pytorch.load_model(f"models:/{name}/{version}")
    except mlflow.exceptions.MlflowException as exc:
        raise ModelLookupError(f"cannot load model {name} version {version}: {exc}") from exc


def model_metadata(run_id: str) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    """What a training run logged beside its model: ``(config, checkpoint_model, sidecar)``.

    ``config`` is ``config.yaml`` (subset with the profile grid and wavelength, data with class
    names or materials); the checkpoint (``checkpoint/model.safetensors``) rebuilds the full
    network (the a-CNN's CAM needs its layers); ``sidecar["metadata"]`` holds class names or
    materials and formulas, ``sidecar["mixture_detector"]`` a classifier's mixture detector
    (``checkpoint/model-mixture``) or None.

    Raises:
        ModelLookupError: the run lacks these artifacts.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="config.yaml", dst_path=tmp
            )
            folder = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="checkpoint", dst_path=tmp
            )
        except (mlflow.exceptions.MlflowException, OSError) as exc:
            raise ModelLookupError(
                f"run {run_id} has no config.yaml or checkpoint/ artifact: {exc}"
            ) from exc
        config = yaml.safe_load(Path(config_path).read_text())
        model, sidecar = load_checkpoint(Path(folder) / "model")
        sidecar["mixture_detector"] = load_companion(Path(folder) / "model", MIXTURE_DETECTOR_ROLE)
    return config, model, sidecar
