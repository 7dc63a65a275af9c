"""What every command shares: the common options and the helpers :func:`settings` and :func:`fail`.

The option aliases keep each command's recorded ``--help`` text: the data and training
commands, the evaluation commands and the stack commands word ``--catalog`` and
``--data-dir`` differently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from xrdpipe.config import Settings

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
