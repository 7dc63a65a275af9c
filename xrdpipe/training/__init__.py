"""One training loop for both models, their losses, and self-describing checkpoints."""

from xrdpipe.training.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_training_state,
    read_metadata,
    save_checkpoint,
)
from xrdpipe.training.loop import (
    TrainConfig,
    TrainingError,
    TrainResult,
    WeightAverage,
    evaluate,
    pick_device,
    seed_everything,
    train,
    train_one_epoch,
)
from xrdpipe.training.losses import (
    SoftmaxBCELoss,
    TVDLoss,
    accuracy,
    classification_loss,
    total_variation_distance,
)

__all__ = [
    "CheckpointError",
    "SoftmaxBCELoss",
    "TVDLoss",
    "TrainConfig",
    "TrainResult",
    "WeightAverage",
    "TrainingError",
    "accuracy",
    "classification_loss",
    "evaluate",
    "load_checkpoint",
    "load_training_state",
    "pick_device",
    "read_metadata",
    "save_checkpoint",
    "seed_everything",
    "total_variation_distance",
    "train",
    "train_one_epoch",
]
