"""The one Dask helper: a client on the configured scheduler, or on a private LocalCluster.

Science code never imports Dask; flows and :mod:`xrdpipe.stages.simulate` take the client this
yields. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
from distributed import Client, LocalCluster

from xrdpipe.config import Settings

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    # Zarr compresses and writes chunks on a thread pool of its own (one thread per core
    # plus four by default): two workers' pools fought over two cores.
    "ZARR_THREADING__MAX_WORKERS": "1",
}
"""Set in every LocalCluster worker: one thread per process (Dask, BLAS, OpenMP, Zarr's
codec pool), so no oversubscription."""

WORKER_PRE_SPAWN_ENV: dict[str, str | None] = {
    **SINGLE_THREAD_ENV,
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in every worker it spawns. Setting any glibc
    # malloc threshold turns off glibc's adaptive mmap threshold, so every allocation
    # above 128 KiB becomes its own mmap/munmap and is page-faulted in afresh each time:
    # measured here, a phase-fraction CNN step in such a worker ran at 57 samples/s
    # against 97 in a plain process (a third of the CPU time in the kernel), and the
    # simulator's large temporaries pay the same. None removes the variable.
    "MALLOC_TRIM_THRESHOLD_": None,
}
"""Set before each LocalCluster worker process starts (Dask's ``pre-spawn-environ``)."""


def dask_temporary_directory(settings: Settings) -> Path:
    """Dask's scratch folder (spill files, worker directories), under the data directory."""
    return Path(settings.data_dir).resolve() / "dask-scratch"


@contextmanager
def dask_client(settings: Settings, n_workers: int | None = None) -> Iterator[Client]:
    """A Dask client for the length of a ``with`` block.

    With ``settings.dask_address`` set, connects to that scheduler (its workers are
    managed elsewhere; start them with ``OMP_NUM_THREADS=1`` and friends yourself).
    Otherwise starts a ``LocalCluster`` of single-threaded worker processes on 127.0.0.1,
    without a dashboard, and closes it on exit.

    Args:
        settings: site settings (``dask_address``, ``dask_workers``, ``data_dir``).
        n_workers: worker processes of a LocalCluster; default ``settings.dask_workers``,
            else one per CPU core. Ignored when connecting to an existing scheduler.

    Yields:
        A connected client.
    """
    scratch = dask_temporary_directory(settings)
    scratch.mkdir(parents=True, exist_ok=True)
    config = {
        "temporary-directory": str(scratch),
        **{f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_PRE_SPAWN_ENV.items()},
    }
    with dask.config.set(config):
        if settings.dask_address:
            client = Client(settings.dask_address, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
            return
        workers = n_workers or settings.dask_workers or os.cpu_count() or 1
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            local_directory=str(scratch),
            env=dict(SINGLE_THREAD_ENV),
        )
        try:
            client = Client(cluster, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
