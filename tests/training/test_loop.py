"""Losses, the training loop and checkpoints, on tiny synthetic CPU data."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest
import torch
from safetensors.torch import load_file

from xrdpipe.errors import ConfigError
from xrdpipe.models import ACNN, ACNNConfig, PhaseCNN, PhaseCNNConfig
from xrdpipe.training import (
    CheckpointError,
    SoftmaxBCELoss,
    TrainConfig,
    TrainingError,
    TVDLoss,
    WeightAverage,
    accuracy,
    classification_loss,
    load_checkpoint,
    load_training_state,
    pick_device,
    save_checkpoint,
    total_variation_distance,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- synthetic data

ACNN_POINTS, ACNN_CENTERS = 600, (100, 300, 500)
PHASE_POINTS = 1500


def classes_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise plus one Gaussian peak whose position decides the class."""
    y = torch.randint(0, len(ACNN_CENTERS), (n,), generator=gen)
    center = torch.tensor(ACNN_CENTERS, dtype=torch.float32)[y].unsqueeze(1)
    grid = torch.arange(ACNN_POINTS, dtype=torch.float32)
    x = torch.exp(-0.5 * ((grid - center) / 5.0) ** 2) + 0.05 * torch.rand(
        n, ACNN_POINTS, generator=gen
    )
    return x, y


def _materials() -> torch.Tensor:
    """Three synthetic single-phase patterns with four Gaussian peaks each."""
    gen = torch.Generator().manual_seed(7)
    grid = torch.arange(PHASE_POINTS, dtype=torch.float32)
    centers = torch.randint(50, PHASE_POINTS - 50, (3, 4, 1), generator=gen).float()
    heights = 0.3 + 0.7 * torch.rand(3, 4, 1, generator=gen)
    return (heights * torch.exp(-0.5 * ((grid - centers) / 6.0) ** 2)).sum(1)


MATERIALS = _materials()


def mixtures_batch(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random mixtures of the three materials (Dirichlet(1) fractions), noisy, max = 1."""
    weights = -torch.log(torch.rand(n, 3, generator=gen))
    fractions = weights / weights.sum(-1, keepdim=True)
    x = fractions @ MATERIALS + 0.03 * torch.rand(n, PHASE_POINTS, generator=gen)
    return x / x.amax(-1, keepdim=True), fractions


def epoch_source(make_batch, steps: int, batch_size: int = 32):
    """Batches as a function of the epoch: the same epoch always sees the same data."""

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(1000 + epoch)
        for _ in range(steps):
            yield make_batch(batch_size, gen)

    return batches


def small_acnn(seed: int = 0, dropout: float = 0.0) -> ACNN:
    torch.manual_seed(seed)
    config = ACNNConfig(n_points=ACNN_POINTS, n_classes=3, position_channel=True, dropout=dropout)
    return ACNN(config)


def small_phase_cnn(seed: int = 0) -> PhaseCNN:
    torch.manual_seed(seed)
    return PhaseCNN(PhaseCNNConfig(n_points=PHASE_POINTS, n_materials=3, width=1 / 16))


def quick_config(**overrides) -> TrainConfig:
    values = dict(epochs=3, steps_per_epoch=4, batch_size=32, lr=3e-3, device="cpu", num_threads=1)
    return TrainConfig(**{**values, **overrides})


# ---------------------------------------------------------------- losses


def test_total_variation_distance_values():
    p = torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]])
    q = torch.tensor([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    assert total_variation_distance(p, p).item() == 0.0
    per_sample = total_variation_distance(p, q, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.3, 1.0])  # 0.5 * (0.3 + 0 + 0.3); disjoint
    assert total_variation_distance(p, q).item() == pytest.approx(0.65)
    # equation 1: TVD = N/2 * MAE
    mae = (p - q).abs().mean(-1)
    assert per_sample.tolist() == pytest.approx((1.5 * mae).tolist())
    with pytest.raises(ConfigError, match="reduction"):
        total_variation_distance(p, q, reduction="max")


def test_tvd_loss_applies_the_softmax_to_logits():
    q = torch.tensor([[0.7, 0.2, 0.1]])
    assert TVDLoss()(q.log(), q).item() == pytest.approx(0.0, abs=1e-6)
    assert TVDLoss(from_logits=False)(q, q).item() == 0.0
    uniform_logits = torch.zeros(1, 3)
    assert TVDLoss()(uniform_logits, q).item() == pytest.approx(0.5 * (0.7 - 1 / 3) * 2)


def test_softmax_bce_matches_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    p = torch.softmax(logits, -1)[0]
    target = torch.tensor([0])
    expected = -(p[0].log() + (1 - p[1]).log() + (1 - p[2]).log()) / 3
    assert SoftmaxBCELoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert isinstance(classification_loss("bce_softmax"), SoftmaxBCELoss)
    ce = classification_loss()(logits, target).item()
    assert ce == pytest.approx(-p[0].log().item(), rel=1e-6)
    with pytest.raises(ConfigError, match="bce_softmax"):
        classification_loss("hinge")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the loop


def test_loss_falls_for_the_acnn_classifier():
    gen = torch.Generator().manual_seed(0)

    def endless() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield classes_batch(32, gen)

    val = classes_batch(96, torch.Generator().manual_seed(99))
    result = train(
        small_acnn(),
        endless(),
        val,
        classification_loss(),
        quick_config(epochs=4, steps_per_epoch=10, lr=1e-2),
        metric_fns={"accuracy": accuracy},
        progress=False,
    )
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert result.history[-1]["metrics"]["accuracy"] > 0.9
    assert all(r["samples"] == 320 for r in result.history)


def test_loss_falls_for_the_phase_cnn_on_mixtures():
    val = mixtures_batch(64, torch.Generator().manual_seed(99))
    model = small_phase_cnn()
    result = train(
        model,
        epoch_source(mixtures_batch, steps=8),
        val,
        TVDLoss(),
        quick_config(epochs=6, lr=2e-3, steps_per_epoch=None),
        metric_fns={"tvd": lambda logits, y: total_variation_distance(logits.softmax(-1), y)},
        progress=False,
    )
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"], history
    # validation lags (batch-norm running statistics settle slowly over 8 steps an epoch)
    assert result.best_val_loss < 0.6 * history[0]["val_loss"], history
    assert history[-1]["metrics"]["tvd"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    record = history[0]
    assert 0.0 <= record["data_time_fraction"] < 1.0 and record["samples_per_s"] > 0
    assert record["lr"] == 2e-3 and record["steps"] == 8


def test_same_seed_gives_identical_losses():
    def run(seed: int) -> list[float]:
        result = train(
            small_acnn(dropout=0.3),
            epoch_source(classes_batch, steps=4),
            classes_batch(64, torch.Generator().manual_seed(5)),
            classification_loss(),
            quick_config(seed=seed, steps_per_epoch=None),
            progress=False,
        )
        return [v for r in result.history for v in (r["train_loss"], r["val_loss"])]

    first = run(seed=3)
    assert run(seed=3) == first
    assert run(seed=4) != first  # the seed drives dropout


def checkpointed_run(folder, val, epochs: int, *, resume: bool, dropout: float = 0.0, **overrides):
    """An a-CNN run that checkpoints into ``folder`` (resuming from its ``last`` if asked)."""
    metadata = overrides.pop("checkpoint_metadata", None)
    return train(
        small_acnn(dropout=dropout),
        epoch_source(classes_batch, steps=3),
        val,
        classification_loss(),
        quick_config(
            epochs=epochs,
            steps_per_epoch=None,
            checkpoint_dir=str(folder),
            early_stopping_patience=None,
            **overrides,
        ),
        progress=False,
        resume_from=folder / "last" if resume else None,
        checkpoint_metadata=metadata,
    )


def test_resume_continues_the_history_exactly(tmp_path):
    val = classes_batch(64, torch.Generator().manual_seed(5))

    def run(epochs: int, resume: bool, folder: str):
        return checkpointed_run(
            tmp_path / folder,
            val,
            epochs,
            resume=resume,
            dropout=0.2,
            checkpoint_metadata={"class_names": ["a", "b", "c"]},
        )

    straight = run(4, resume=False, folder="straight")
    run(2, resume=False, folder="cut")
    resumed = run(4, resume=True, folder="cut")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    keys = ("train_loss", "val_loss")
    assert [[r[k] for k in keys] for r in resumed.history] == [
        [r[k] for k in keys] for r in straight.history
    ]
    state = load_training_state(tmp_path / "cut" / "last.train.pt")
    assert state["epoch"] == 4 and len(state["history"]) == 4
    model, sidecar = load_checkpoint(tmp_path / "cut" / "best")
    assert sidecar["metadata"]["class_names"] == ["a", "b", "c"]
    assert sidecar["metadata"]["epoch"] == resumed.best_epoch
    assert sidecar["train_config"]["epochs"] == 4


def test_early_stopping_triggers_on_a_plateau_and_restores_the_best_weights(capsys):
    model = small_acnn()
    records = []
    result = train(
        model,
        epoch_source(classes_batch, steps=2),
        classes_batch(32, torch.Generator().manual_seed(5)),
        classification_loss(),
        quick_config(
            epochs=20, steps_per_epoch=None, lr=1e-9, early_stopping_patience=2, min_delta=1e-3
        ),
        callbacks=[records.append],
        progress=True,
    )
    assert "train" in capsys.readouterr().err  # the tqdm bar
    assert result.stopped_early and result.stop_reason == "early_stopping"
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1 and [r["is_best"] for r in records] == [True, False, False]
    current = model.state_dict()
    assert all(torch.equal(current[k], v) for k, v in result.best_state.items())
    assert records == result.history


def test_callbacks_and_the_time_budget_stop_the_run():
    def stop_at_two(record: dict) -> bool:
        return record["epoch"] == 2

    result = train(
        small_acnn(),
        epoch_source(classes_batch, steps=2),
        None,
        classification_loss(),
        quick_config(epochs=10, steps_per_epoch=None),
        callbacks=[stop_at_two],
        progress=False,
    )
    assert result.stop_reason == "callback" and len(result.history) == 2
    assert math.isnan(result.history[0]["val_loss"]) and result.best_epoch == 2

    result = train(
        small_acnn(),
        epoch_source(classes_batch, steps=50),
        None,
        classification_loss(),
        quick_config(epochs=10, steps_per_epoch=None, max_minutes=1e-6),
        progress=False,
    )
    assert result.stop_reason == "time_budget"
    assert len(result.history) == 1 and result.history[0]["steps"] == 1


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    model = small_phase_cnn()
    train(
        model,
        epoch_source(mixtures_batch, steps=2),
        None,
        TVDLoss(),
        quick_config(epochs=1, steps_per_epoch=None),
        progress=False,
    )
    model.eval()
    x, _ = mixtures_batch(4, torch.Generator().manual_seed(3))
    path = save_checkpoint(
        tmp_path / "ckpt",
        model,
        train_config=quick_config(),
        metadata={"material_ids": ["1000041", "9008565", "1011098"]},
        training_state={"epoch": 1, "rng": {"torch": torch.get_rng_state()}},
    )
    assert path.name == "ckpt.safetensors"
    loaded, sidecar = load_checkpoint(tmp_path / "ckpt.json")
    assert isinstance(loaded, PhaseCNN) and not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert sidecar["metadata"]["material_ids"][0] == "1000041"
    assert sidecar["model"] == "phase_cnn" and sidecar["train_config"]["lr"] == 3e-3
    assert json.loads((tmp_path / "ckpt.json").read_text()) == sidecar
    # weights are plain tensors; the resume state loads under weights_only semantics
    assert set(load_file(path)) == set(model.state_dict())
    state = torch.load(tmp_path / "ckpt.train.pt", weights_only=True)
    assert state["epoch"] == 1
    # without its sidecar the checkpoint still loads from the safetensors header
    (tmp_path / "ckpt.json").unlink()
    assert load_checkpoint(path)[1]["metadata"] == sidecar["metadata"]


class _NotATensor:
    pass


def test_training_state_refuses_arbitrary_pickles(tmp_path):
    save_checkpoint(tmp_path / "ckpt", small_acnn())
    torch.save({"epoch": 1, "payload": _NotATensor()}, tmp_path / "ckpt.train.pt")
    with pytest.raises(CheckpointError, match="cannot read training state"):
        load_training_state(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="no readable sidecar"):
        load_checkpoint(tmp_path / "missing")


def test_resuming_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "last", small_acnn(), training_state={"epoch": 1})
    with pytest.raises(TrainingError, match="holds"):
        train(
            small_phase_cnn(),
            epoch_source(mixtures_batch, steps=1),
            None,
            TVDLoss(),
            quick_config(),
            progress=False,
            resume_from=tmp_path / "last",
        )


def test_device_choice_and_config_validation():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device().type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            pick_device("cuda")
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=0)


def test_cosine_schedule_anneals_by_epochs_or_wall_time():
    from xrdpipe.training.loop import TrainConfig
    from xrdpipe.training.schedule import lr_at

    cfg = TrainConfig(epochs=10, lr=1.0, lr_schedule="cosine", max_minutes=5.0)
    assert lr_at(cfg, 1) == pytest.approx(1.0)
    assert lr_at(cfg, 6) == pytest.approx(0.5)
    # half the wall-clock budget used at epoch 2: the schedule is half way
    assert lr_at(cfg, 2, time_fraction=0.5) == pytest.approx(0.5)
    assert lr_at(cfg, 2, time_fraction=1.2) == pytest.approx(0.0)
    constant = TrainConfig(epochs=10, lr=1.0)
    assert lr_at(constant, 7, time_fraction=0.9) == 1.0


def test_weight_average_follows_the_formula_and_gives_the_weights_back():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)  # first update: warm-up decay min(0.5, 2/11)
    d = 2.0 / 11.0
    expected = d * start["weight"] + (1.0 - d) * model.weight.detach()
    assert torch.allclose(average.state["weight"], expected)
    assert torch.equal(average.state["bias"], start["bias"])  # unchanged weights, same average
    own = model.weight.detach().clone()
    with average.applied(model):
        assert torch.allclose(model.weight, expected)
    assert torch.equal(model.weight, own)
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_weight_average_is_validated_kept_and_resumed(tmp_path):
    val = classes_batch(64, torch.Generator().manual_seed(5))

    def run(epochs: int, resume: bool, folder: str, ema_decay: float | None = 0.9):
        return checkpointed_run(tmp_path / folder, val, epochs, resume=resume, ema_decay=ema_decay)

    raw = run(4, resume=False, folder="raw", ema_decay=None)
    straight = run(4, resume=False, folder="straight")
    # validation sees the average, not the raw weights the same steps produced
    assert straight.history[0]["val_loss"] != pytest.approx(raw.history[0]["val_loss"])
    assert straight.history[0]["train_loss"] == raw.history[0]["train_loss"]
    run(2, resume=False, folder="cut")
    resumed = run(4, resume=True, folder="cut")
    keys = ("train_loss", "val_loss")
    assert [[r[k] for k in keys] for r in resumed.history] == [
        [r[k] for k in keys] for r in straight.history
    ]
    # the best weights are the average: the registered model scores what validation saw
    model, _ = load_checkpoint(tmp_path / "cut" / "best")
    loss = classification_loss()(model(val[0]), val[1]).item()
    assert loss == pytest.approx(resumed.best_val_loss, rel=1e-5)
    with pytest.raises(TrainingError, match="without ema_decay"):
        run(5, resume=True, folder="raw")


def test_a_time_budgeted_bar_counts_minutes_of_the_budget_and_epochs(capsys):
    import dataclasses
    import time

    from xrdpipe.training.progress import TrainingBar

    cfg = TrainConfig(epochs=40, steps_per_epoch=1000, batch_size=8, max_minutes=2.5)
    bar = TrainingBar(cfg, 1, True, time.perf_counter() - 30.0)  # 30 s of the budget used
    assert bar.total == 2.5  # minutes, not 40,000 steps
    bar.update(1)
    bar.epoch_done(3, val="0.1")
    assert bar.minutes_used() == pytest.approx(0.5, abs=0.05)
    bar.close()
    err = capsys.readouterr().err
    assert "0.5/2.5 min" in err and "epoch=3/40" in err and "budget 2.5 min" in err
    steps = TrainingBar(dataclasses.replace(cfg, max_minutes=None), 3, False, time.perf_counter())
    assert steps.total == 40_000 and steps.bar.n == 2_000  # a resumed run starts at epoch 3


class _AutocastProbe(torch.nn.Module):
    """An a-CNN that records, per forward pass, whether CPU bf16 autocast was on."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = small_acnn()
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        self.seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return out


def test_cpu_bf16_autocasts_the_forward_passes_and_still_learns():
    val = classes_batch(96, torch.Generator().manual_seed(99))
    runs = {}
    for cpu_bf16 in (False, True):
        model = _AutocastProbe()
        result = train(
            model,
            epoch_source(classes_batch, steps=10),
            val,
            classification_loss(),
            quick_config(epochs=4, steps_per_epoch=10, lr=1e-2, cpu_bf16=cpu_bf16),
            metric_fns={"accuracy": accuracy},
            progress=False,
        )
        runs[cpu_bf16] = result
        # every training and validation pass, and only under the option
        assert {on for on, _ in model.seen} == {cpu_bf16}
        assert {dtype for _, dtype in model.seen} == (
            {torch.bfloat16} if cpu_bf16 else {torch.float32}
        )
        # the weights stay float32 (the checkpoint and inference are unchanged)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    for result in runs.values():
        losses = [r["train_loss"] for r in result.history]
        assert losses[-1] < 0.5 * losses[0], losses
        assert result.history[-1]["metrics"]["accuracy"] > 0.9
    # not the float32 run in disguise
    assert runs[True].history[-1]["val_loss"] != runs[False].history[-1]["val_loss"]
