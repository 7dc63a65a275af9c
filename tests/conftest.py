"""Shared fixtures: environment hygiene for the whole session and the real COD test server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cod_server import CodTestServer, cod_sample_dir


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
    folder = cod_sample_dir()
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
