"""The training loop's progress bar: steps, or minutes of a time budget, that tell the truth.

With ``TrainConfig.max_minutes`` the bar counts minutes used of minutes allowed (its total is
the budget) and shows the epochs done: a step count would promise epochs that the budget will
never reach (a 30-minute run once showed 5,200,000 steps and an ETA of 1,400 hours). Without a
budget it counts steps of ``steps_per_epoch x epochs`` as before.
"""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm

from xrdpipe.training.config import TrainConfig

REFRESH_S = 0.5
"""A time-budget bar is redrawn at most this often (seconds)."""


class TrainingBar:
    """A tqdm bar advanced once per optimisation step (``update``), over steps or minutes.

    Args:
        cfg: the loop's settings (``max_minutes``, ``epochs``, ``steps_per_epoch``).
        start_epoch: the first epoch this run trains (after a resume, the next one).
        enabled: draw the bar (stderr).
        wall_start: ``time.perf_counter()`` at the start of the run (the budget's origin).
    """

    def __init__(
        self, cfg: TrainConfig, start_epoch: int, enabled: bool, wall_start: float
    ) -> None:
        self.budget_min = cfg.max_minutes
        self.epochs = cfg.epochs
        self.wall_start = wall_start
        self._drawn = 0.0
        steps = cfg.steps_per_epoch
        if self.budget_min is not None:
            self.bar = tqdm(
                total=round(self.budget_min, 2),
                disable=not enabled,
                desc=f"train (budget {self.budget_min:g} min)",
                unit="min",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} min {postfix}",
                dynamic_ncols=True,
            )
        else:
            self.bar = tqdm(
                total=None if steps is None else steps * cfg.epochs,
                initial=0 if steps is None else steps * (start_epoch - 1),
                disable=not enabled,
                desc="train",
                dynamic_ncols=True,
            )

    @property
    def total(self) -> float | None:
        """The bar's total: minutes of the budget, or steps (``None`` when unknown)."""
        return self.bar.total

    def minutes_used(self) -> float:
        """Wall-clock minutes since the start of the run."""
        return (time.perf_counter() - self.wall_start) / 60.0

    def update(self, n: int = 1) -> None:
        """One more optimisation step (``n`` steps)."""
        if self.budget_min is None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if now - self._drawn >= REFRESH_S:
            self._drawn = now
            self._set_minutes()

    def _set_minutes(self) -> None:
        self.bar.n = round(min(self.minutes_used(), self.budget_min or 0.0), 2)
        self.bar.refresh()

    def epoch_done(self, epoch: int, **values: Any) -> None:
        """Show the epochs done (of at most ``cfg.epochs``) and the epoch's values."""
        if self.budget_min is not None:
            self._set_minutes()
        self.bar.set_postfix(epoch=f"{epoch}/{self.epochs}", **values)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
