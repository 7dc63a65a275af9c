"""Where the training loop's batches come from: any :data:`BatchSource`, epoch by epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from torch import Tensor

Batch = tuple[Tensor, Tensor]
BatchSource = Iterable[Batch] | Callable[[int], Iterable[Batch]]
"""Training batches: an (endless) iterator, a re-iterable (list, DataLoader), or a function of
the 1-based epoch returning that epoch's batches (which makes resuming exact)."""


class EpochBatches:
    """Hands out each epoch's batches from any :data:`BatchSource`."""

    def __init__(self, source: BatchSource) -> None:
        self.source = source
        self._iterator: Iterator[Batch] | None = None

    def epoch(self, epoch: int, steps: int | None) -> Iterable[Batch]:
        source = self.source
        if callable(source) and not isinstance(source, Iterable):
            return source(epoch)  # that epoch's batches
        if isinstance(source, Iterator) or steps is None:
            return source  # an iterator goes on where it stopped; a re-iterable starts again
        return self._restarting(steps)

    def _restarting(self, steps: int) -> Iterator[Batch]:
        """``steps`` batches from a re-iterable, starting it again whenever it runs out."""
        for _ in range(steps):
            if self._iterator is None:
                self._iterator = iter(self.source)  # type: ignore[arg-type]
            try:
                yield next(self._iterator)
            except StopIteration:
                self._iterator = iter(self.source)  # type: ignore[arg-type]
                yield next(self._iterator)
