"""The ``xrdpipe`` command line: each stage on one subset, with a progress bar and a summary.

The CLI calls the same library functions as the Prefect flows, without a Prefect server.
"""

from __future__ import annotations

import typer

from xrdpipe.cli.data import fetch, plot_mixtures_command, simulate
from xrdpipe.cli.evaluate import classifiers_command, evaluate_command, report_command
from xrdpipe.cli.predict import predict_command
from xrdpipe.cli.quantify import quantify_command
from xrdpipe.cli.stack import down_command, status_command, up_command
from xrdpipe.cli.train import run, train

# One module per command group: data (fetch, simulate, plot-mixtures), train (train, run),
# stack (up, down, status), evaluate (evaluate, evaluate-classifiers, report), predict,
# quantify;
# common holds the shared options and helpers. Registration order is the order of --help.
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _main() -> None:
    """xrdpipe: COD to trained, tracked powder-XRD models."""


app.command()(fetch)
app.command()(simulate)
app.command("plot-mixtures")(plot_mixtures_command)
app.command()(train)
app.command()(run)
app.command("up")(up_command)
app.command("down")(down_command)
app.command("status")(status_command)
app.command("evaluate")(evaluate_command)
app.command("evaluate-classifiers")(classifiers_command)
app.command("report")(report_command)
app.command("predict")(predict_command)
app.command("quantify")(quantify_command)


def main() -> None:  # pragma: no cover - console entry point
    """Entry point."""
    app()
