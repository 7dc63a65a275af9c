"""Shared fixtures: environment hygiene, the real COD test server, the tiny store, one thread."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.cod_server import CodTestServer
from tests.support import COD_SAMPLE, build_tiny_store


@pytest.fixture(scope="session", autouse=True)
def _env_hygiene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No telemetry from any library, and matplotlib's cache in a temporary folder."""
    wanted = {
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MPLCONFIGDIR": str(tmp_path_factory.mktemp("mplconfig")),
    }
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def cod_sample() -> Path:
    """The shared COD sample (``index.json``, ``cif/``); skips if it is not there."""
    folder = COD_SAMPLE
    if not (folder / "index.json").is_file():
        pytest.skip(f"COD sample not found at {folder} (set XRDPIPE_SHARED_DIR)")
    return folder


@pytest.fixture
def cod_server(cod_sample: Path) -> Iterator[CodTestServer]:
    """A real COD-shaped HTTP server on 127.0.0.1, fresh for each test."""
    server = CodTestServer(cod_sample).start()
    try:
        yield server
    finally:
        server.stop()


def pytest_configure(config: pytest.Config) -> None:
    """Keep Prefect's home and Dask's spill directory out of the user's home."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="xrdpipe-tests-"))
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    os.environ.setdefault("DASK_TEMPORARY_DIRECTORY", str(root / "dask"))
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's real test harness (a temporary SQLite-backed API), once per test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_store_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny real store's folder (``manifest.parquet``, ``patterns.zarr`` with rendered
    profiles: 7 sample materials, 10 + 4 strains), built once per session; read only."""
    return build_tiny_store(tmp_path_factory.getbasetemp() / "train-stores")


@pytest.fixture
def tiny_store(tiny_store_built: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny store: ``<tmp>/data/tiny/patterns.zarr``."""
    target = tmp_path / "data" / "tiny"
    shutil.copytree(tiny_store_built, target)
    return target / "patterns.zarr"


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test (deterministic, and fair to a parallel run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
