"""Prefect flow ``quantify``: measured scans to a weight-% table with error bars."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from xrdpipe.config import Settings
from xrdpipe.stages.quantify import quantify as quantify_scans


@task(name="quantify-scans", cache_policy=NO_CACHE)
def quantify_task(
    scans: list[str],
    phases: str,
    settings: Settings,
    instrument: str | None,
    preset: str,
    members: int | None,
    refine: bool,
    internal_standard: str | None,
    standard_wt: float | None,
    out_dir: str | None,
    catalog: str | None,
) -> dict:
    logger = get_run_logger()
    result = quantify_scans(
        [Path(s) for s in scans],
        Path(phases),
        settings,
        instrument=None if instrument is None else Path(instrument),
        preset=preset,
        members=members,
        refine=refine,
        internal_standard=internal_standard,
        standard_wt=standard_wt,
        out_dir=None if out_dir is None else Path(out_dir),
        catalog=None if catalog is None else Path(catalog),
        log=logger.info,
    )
    return {
        "out_dir": str(result.out_dir),
        "registered_model": result.model[0],
        "version": result.model[1],
        "trained": result.trained,
        "seconds_per_scan": result.seconds_per_scan,
        "rows": result.rows,
        "failed": result.failed,
        "files": {k: str(v) for k, v in result.files.items()},
    }


@flow(name="quantify", log_prints=True)
def quantify(
    scans: list[str],
    phases: str,
    instrument: str | None = None,
    preset: str = "phase-set",
    members: int | None = None,
    refine: bool = False,
    internal_standard: str | None = None,
    standard_wt: float | None = None,
    out_dir: str | None = None,
    catalog: str | None = None,
) -> dict:
    """Weight % of each phase of a folder of CIFs in measured scans (``xrdpipe quantify``).

    Trains (or reuses, by fingerprint) the phase set's ensemble, registered in MLflow.

    Args:
        scans: measured files.
        phases: a folder of CIF files, one per candidate phase.
        instrument: a scan whose lines, range, slit and radius the training uses.
        preset: the phase-fraction preset (``phase-set``, ``phase-set-gpu``).
        members: ensemble members (default 3).
        refine: polish the CNN's answer with the whole-pattern refinement.
        internal_standard: a phase name weighed into every sample.
        standard_wt: its weight percent of the whole sample.
        out_dir: output folder (default ``<data>/<phase set>/quantify/<time>``).
        catalog: the base catalog.
    """
    return quantify_task(
        scans, phases, Settings(), instrument, preset, members, refine,
        internal_standard, standard_wt, out_dir, catalog,
    )  # fmt: skip


if __name__ == "__main__":
    quantify()
