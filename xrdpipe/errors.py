"""The exception family of xrdpipe: every message names the bad value and what is allowed."""


class XrdpipeError(Exception):
    """Base class of every error xrdpipe raises on purpose."""


class ConfigError(XrdpipeError):
    """The catalog or the settings hold a bad key or value."""


class CodError(XrdpipeError):
    """COD (or a mirror of it) could not deliver what was asked."""


class CodUnavailableError(CodError):
    """COD did not answer after every retry (outage, timeouts, rate limits)."""


class CodNotFoundError(CodError):
    """COD answered 404 for an entry: the id does not exist."""


class InvalidCodIdError(CodError, ValueError):
    """A COD id that is not a string of digits (it would be unsafe as a path or URL)."""


class StructureError(XrdpipeError):
    """A structure could not be parsed, analysed or simulated; carries the quarantine stage."""

    def __init__(self, stage: str, reason: str, detail: str = "") -> None:
        self.stage = stage
        self.reason = reason
        self.detail = detail
        super().__init__(f"{stage}: {reason}" + (f" ({detail})" if detail else ""))


class StoreError(XrdpipeError):
    """A pattern store is missing, incomplete or was made with another configuration."""


class MeasuredPatternError(XrdpipeError):
    """A measured pattern file cannot be read or does not fit a model (names file and fix)."""


def raise_for_failures(
    failures: list[tuple[int, int, BaseException]], total: int, what: str, kept: str
) -> None:
    """One error for the ranges whose tasks failed (the first failure chained), if any.

    Args:
        failures: ``(start, stop, exception)`` of each failed task.
        total: tasks submitted.
        what: what a task is, plural (``blocks``, ``synthetic chunks``).
        kept: what survives (``Completed blocks``), said before "are kept; run again".

    Raises:
        StoreError: some task failed.
    """
    if not failures:
        return
    listed = ", ".join(f"[{a}, {b})" for a, b, _ in failures[:10])
    first = failures[0][2]
    raise StoreError(
        f"{len(failures)} of {total} {what} failed ({listed}): {type(first).__name__}: "
        f"{first}. {kept} are kept; run again to resume."
    ) from first
