"""What every command shares: the common options, :func:`settings`, :func:`fail`, :func:`run_step`.

The option aliases keep each command's recorded ``--help`` text: the data and training
commands, the evaluation commands and the stack commands word ``--catalog`` and
``--data-dir`` differently.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from xrdpipe.config import Settings
from xrdpipe.errors import XrdpipeError

if TYPE_CHECKING:
    from xrdpipe.stages.phase_set import PhaseSet

MirrorOpt = Annotated[
    Path | None, typer.Option("--mirror", help="Read this local COD mirror directory instead.")
]
CodUrlOpt = Annotated[str | None, typer.Option("--cod-url", help="Query this COD base URL.")]
CatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="Another catalog.yaml.")]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Where stores go (else XRDPIPE_DATA_DIR).")
]

EvaluateCatalogOpt = Annotated[Path | None, typer.Option("--catalog", help="Another catalog.")]
EvaluateDataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")]
StackDataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (else XRDPIPE_DATA_DIR).")
]
PhasesOpt = Annotated[
    Path | None,
    typer.Option(
        "--phases",
        help="A folder of CIF files (a lab's phase set, lab defaults) instead of a subset.",
    ),
]
InstrumentOpt = Annotated[
    Path | None,
    typer.Option(
        "--instrument", help="With --phases: a scan whose lines, range, slit, radius are used."
    ),
]


@dataclass(frozen=True)
class Target:
    """The subset a command works on, and its catalog: as given, or a phase set's.

    Attributes:
        subset: the subset's name.
        catalog: the catalog file (``None``: the default catalog).
        phase_set: the phase set written for ``--phases`` (``None`` without it).
    """

    subset: str
    catalog: Path | None
    phase_set: PhaseSet | None = None

    def preset(self, given: str | None, default: str) -> str:
        """``given``, else the phase set's preset (``phase-set``), else ``default``."""
        if given is not None:
            return given
        return default if self.phase_set is None else self.phase_set.preset

    def n_materials(self, given: int | None, data_dir: Path | None, default: int = 5) -> int:
        """``given``, else the number of phases of the phase set, else ``default``."""
        if given is not None:
            return given
        if self.phase_set is None:
            return default
        from xrdpipe.stages.phase_set import phase_count

        return phase_count(self.phase_set, settings(data_dir))


def target(
    subset: str,
    catalog: Path | None,
    data_dir: Path | None,
    phases: Path | None,
    instrument: Path | None,
) -> Target:
    """The subset and catalog of a command: ``--phases`` writes a phase set's catalog.

    With ``--phases DIR`` (and ``--instrument SCAN``),
    :func:`~xrdpipe.stages.phase_set.phase_set_catalog` writes
    ``<data_dir>/phases-<slug>/catalog.yaml`` on ``--catalog`` (or the default catalog) and
    its subset replaces ``subset``. An error exits with code 2 (:func:`fail`).
    """
    if phases is None:
        if instrument is not None:
            fail(XrdpipeError("--instrument needs --phases (a folder of CIF files)"))
        return Target(subset, catalog)
    from xrdpipe.stages.phase_set import phase_set_catalog

    try:
        found = phase_set_catalog(phases, settings(data_dir), instrument, catalog)
    except XrdpipeError as exc:
        fail(exc)
    return Target(found.name, found.catalog, found)


def settings(data_dir: Path | None) -> Settings:
    """The site settings, with ``data_dir`` instead of ``XRDPIPE_DATA_DIR`` when given."""
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def fail(exc: Exception) -> NoReturn:
    """Print ``error: <exc>`` in red on stderr and exit with code 2."""
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2) from exc


class Bars:
    """Progress bars on stderr, one per kind of work (``CIFs``, ``structures``, ``blocks``...).

    Called as ``bars(what, done, total)`` (a stage's progress hook); use it in a ``with``
    block so that every bar is closed.
    """

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(what)
        if bar is None:
            bar = self.bars[what] = tqdm(total=total, desc=what, file=sys.stderr)
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.close()


def run_step(data_dir: Path | None, step: str, **arguments: Any) -> dict[str, Any]:
    """One stage of :func:`~xrdpipe.stages.pipeline.local_steps`, with bars and its summary.

    Args:
        data_dir: the ``--data-dir`` option.
        step: ``fetch``, ``simulate``, ``train`` or ``evaluate``.
        **arguments: the step's keywords (see :class:`~xrdpipe.stages.pipeline.Steps`).

    An :class:`~xrdpipe.errors.XrdpipeError` exits with code 2 (:func:`fail`).
    """
    from xrdpipe.stages.pipeline import local_steps

    with Bars() as bars:
        try:
            return getattr(local_steps(settings(data_dir), typer.echo, bars), step)(**arguments)
        except XrdpipeError as exc:
            fail(exc)
