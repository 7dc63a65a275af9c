"""Helpers for the training loop's epoch callbacks."""

from __future__ import annotations

from collections.abc import Sequence

from xrdpipe.training.loop import Callback


def with_prefix(callbacks: Sequence[Callback], prefix: str) -> list[Callback]:
    """Callbacks that see ``record["prefix"] = prefix`` (variants log under their own names)."""

    def wrap(callback: Callback) -> Callback:
        return lambda record: callback({**record, "prefix": prefix})

    return [wrap(cb) for cb in callbacks]
