"""The MLflow seam: the only package of xrdpipe that imports mlflow.

- :mod:`xrdpipe.tracking.runs`: configuration, experiments, one run per training
  (:func:`training_run`, whose :meth:`TrainingRun.log_epoch` is the training loop's
  callback), model logging and the logging of a finished task (:func:`log_phase_fractions`,
  :func:`log_classifier`);
- :mod:`xrdpipe.tracking.registry`: promotion to ``champion`` and the read-only registry
  (``xrdpipe predict``);
- :mod:`xrdpipe.tracking.evaluation_runs`: the N/K grid's and cross-validation's runs.

Tracking never calls training: the train stage (:func:`xrdpipe.stages.train.train_task`)
opens :func:`training_run`, hands ``run.log_epoch`` to the training loop and logs what the
task returns. SQLite tracking stores must be written from one process at a time (parallel
writers hit "database is locked"): log from the process that trains, or use an MLflow server.
"""

from xrdpipe.tracking.evaluation_runs import (
    CLASSIFICATION_EXPERIMENT,
    GRID_EXPERIMENT,
    download_latest_report,
    finish_grid_run,
    log_grid_cell,
    start_grid_run,
)
from xrdpipe.tracking.registry import (
    CHAMPION_ALIAS,
    PROMOTION_STANDARD_ERRORS,
    ModelLookupError,
    Promotion,
    RegisteredVersion,
    load_registered,
    load_version,
    model_metadata,
    promote_if_better,
    registered_version,
    registered_versions,
)
from xrdpipe.tracking.runs import (
    CANDIDATE_ALIAS,
    EXPERIMENT_PREFIX,
    MAX_PARAM_LENGTH,
    MODEL_FORMAT,
    TrackedModel,
    TrainingRun,
    configure,
    experiment_name,
    flatten,
    git_commit,
    log_classifier,
    log_model,
    log_phase_fractions,
    pip_requirements,
    probability_model,
    registered_model_name,
    tag_registered_model,
    training_run,
)

__all__ = [
    "CANDIDATE_ALIAS",
    "CHAMPION_ALIAS",
    "CLASSIFICATION_EXPERIMENT",
    "EXPERIMENT_PREFIX",
    "GRID_EXPERIMENT",
    "MAX_PARAM_LENGTH",
    "MODEL_FORMAT",
    "PROMOTION_STANDARD_ERRORS",
    "ModelLookupError",
    "Promotion",
    "RegisteredVersion",
    "TrackedModel",
    "TrainingRun",
    "configure",
    "download_latest_report",
    "experiment_name",
    "finish_grid_run",
    "flatten",
    "git_commit",
    "load_registered",
    "load_version",
    "log_classifier",
    "log_grid_cell",
    "log_model",
    "log_phase_fractions",
    "model_metadata",
    "pip_requirements",
    "probability_model",
    "promote_if_better",
    "registered_model_name",
    "registered_version",
    "registered_versions",
    "start_grid_run",
    "tag_registered_model",
    "training_run",
]
