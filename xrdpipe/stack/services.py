"""The stack's services: their commands, health checks, up/down/status, deploy, instructions.

Prefect is driven through its command line only: nothing here imports prefect or mlflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from xrdpipe.config import Settings
from xrdpipe.stack.processes import (
    HOST,
    QUIET_ENV,
    SERVICES,
    STOP_GRACE_S,
    ServiceRecord,
    StackError,
    StackPaths,
    _live_records,
    _port_free,
    _process,
    _spawn,
    _stop_record,
    _tail,
    read_records,
)

WORK_POOL = "xrdpipe"
"""The process work pool of ``deploy/prefect.yaml``."""
WORKER_NAME = "xrdpipe-local"
START_TIMEOUT_S = 180.0
"""A fresh Prefect database takes ~20 s to migrate and MLflow ~15 s on 2 busy cores."""
HEALTH_TIMEOUT_S = 3.0
"""Timeout of one health request."""


@dataclass(frozen=True)
class Endpoints:
    """The two servers' ports on 127.0.0.1 and the URLs derived from them."""

    prefect_port: int
    mlflow_port: int

    @property
    def prefect_ui(self) -> str:
        return f"http://{HOST}:{self.prefect_port}"

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_ui}/api"

    @property
    def mlflow_ui(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"


@dataclass(frozen=True)
class ServiceStatus:
    """What ``xrdpipe status`` reports for one service."""

    name: str
    record: ServiceRecord | None
    running: bool
    healthy: bool | None


@dataclass(frozen=True)
class StackInfo:
    """A running stack: where it is and the environment clients need."""

    paths: StackPaths
    endpoints: Endpoints
    services: dict[str, ServiceRecord]
    client_env: dict[str, str]


# --- commands and environments ----------------------------------------------------------------


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def prefect_server_command(port: int) -> list[str]:
    return _python("prefect", "server", "start", "--host", HOST, "--port", str(port))


def mlflow_server_command(paths: StackPaths, port: int) -> list[str]:
    return _python(
        "mlflow",
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{paths.mlflow_db}",
        "--artifacts-destination",
        str(paths.mlflow_artifacts),
    )


def worker_command() -> list[str]:
    return _python(
        "prefect",
        "worker",
        "start",
        "--pool",
        WORK_POOL,
        "--type",
        "process",
        "--name",
        WORKER_NAME,
        "--install-policy",
        "never",
    )


def client_env(
    settings: Settings, endpoints: Endpoints, project_dir: Path | None
) -> dict[str, str]:
    """What a shell (and every flow run) needs to use the stack."""
    env = {
        "PREFECT_API_URL": endpoints.prefect_api,
        "XRDPIPE_MLFLOW_TRACKING_URI": endpoints.mlflow_ui,
        "MLFLOW_TRACKING_URI": endpoints.mlflow_ui,
        "XRDPIPE_DATA_DIR": str(Path(settings.data_dir).resolve()),
    }
    if project_dir is not None:
        env["XRDPIPE_PROJECT_DIR"] = str(project_dir)
    return env


def find_project_dir(explicit: Path | str | None = None) -> Path | None:
    """The folder holding ``deploy/prefect.yaml``.

    Tried in order: the argument, ``XRDPIPE_PROJECT_DIR``, the source tree of this package
    (editable install), the current directory.
    """
    candidates = [explicit, os.environ.get("XRDPIPE_PROJECT_DIR")]
    candidates += [Path(__file__).resolve().parents[2], Path.cwd()]
    for candidate in candidates:
        if candidate and (Path(candidate) / "deploy" / "prefect.yaml").is_file():
            return Path(candidate).resolve()
    if explicit is not None:
        raise StackError(f"project_dir {str(explicit)!r} has no deploy/prefect.yaml")
    return None


# --- start, check, stop -------------------------------------------------------------------------


def _http_ok(url: str, accept: Callable[[httpx.Response], bool]) -> bool:
    try:
        response = httpx.get(url, timeout=HEALTH_TIMEOUT_S, trust_env=False)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and accept(response)


def prefect_healthy(endpoints: Endpoints) -> bool:
    """``GET /api/health`` answers ``true``."""
    return _http_ok(f"{endpoints.prefect_api}/health", lambda r: r.text.strip() == "true")


def mlflow_healthy(endpoints: Endpoints) -> bool:
    """``GET /health`` answers ``OK``."""
    return _http_ok(f"{endpoints.mlflow_ui}/health", lambda r: r.text.strip() == "OK")


def worker_online(endpoints: Endpoints) -> bool:
    """The worker has registered with the work pool and sent a heartbeat."""
    try:
        response = httpx.post(
            f"{endpoints.prefect_api}/work_pools/{WORK_POOL}/workers/filter",
            json={},
            timeout=HEALTH_TIMEOUT_S,
            trust_env=False,
        )
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    return any(
        w.get("name") == WORKER_NAME and w.get("status", "ONLINE") == "ONLINE"
        for w in response.json()
    )


def _wait(records: Iterable[tuple[ServiceRecord, Callable[[], bool]]], timeout_s: float) -> None:
    pending = list(records)
    deadline = time.monotonic() + timeout_s
    while pending:
        for record, check in list(pending):
            if _process(record) is None:
                raise StackError(
                    f"{record.name} exited during start-up; last lines of {record.log}:\n"
                    + _tail(record.log)
                )
            if check():
                pending.remove((record, check))
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{r.name} ({r.url})" for r, _ in pending)
            log = pending[0][0].log
            raise StackError(
                f"not healthy after {timeout_s:.0f} s: {names}; last lines of {log}:\n" + _tail(log)
            )
        time.sleep(0.5)


def _endpoints(settings: Settings, records: Mapping[str, ServiceRecord]) -> Endpoints:
    prefect = records.get("prefect-server")
    mlflow = records.get("mlflow")
    return Endpoints(
        prefect.port if prefect and prefect.port else settings.prefect_port,
        mlflow.port if mlflow and mlflow.port else settings.mlflow_port,
    )


def start_worker(
    settings: Settings,
    extra_env: Mapping[str, str] | None = None,
    project_dir: Path | str | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> ServiceRecord:
    """Start the process worker of pool ``xrdpipe`` against the running Prefect server.

    Args:
        settings: site settings (data directory); the servers must be running.
        extra_env: more variables for the worker and so for every flow run it starts
            (e.g. ``XRDPIPE_DASK_ADDRESS``, ``XRDPIPE_CATALOG``).
        project_dir: where the flows' source is (``XRDPIPE_PROJECT_DIR`` of the runs).
        timeout_s: seconds to wait for the worker's first heartbeat.
    """
    paths = StackPaths.for_settings(settings)
    live = _live_records(paths)
    if "prefect-server" not in live:
        raise StackError("no Prefect server of this stack runs: run `xrdpipe up` first")
    if "prefect-worker" in live:
        raise StackError(f"the worker already runs (pid {live['prefect-worker'].pid})")
    endpoints = _endpoints(settings, live)
    env = {
        "PREFECT_HOME": str(paths.prefect_home),
        **client_env(settings, endpoints, find_project_dir(project_dir)),
        **(extra_env or {}),
    }
    cwd = find_project_dir(project_dir) or paths.root
    record = _spawn(paths, "prefect-worker", worker_command(), env, cwd)
    try:
        _wait([(record, lambda: worker_online(endpoints))], timeout_s)
    except StackError:
        stop_service(settings, "prefect-worker")
        raise
    return record


def stop_service(settings: Settings, name: str, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop one service (every process of it); returns pids that survived (none, normally)."""
    if name not in SERVICES:
        raise StackError(f"service {name!r} is not one of {SERVICES}")
    paths = StackPaths.for_settings(settings)
    record = ServiceRecord.read(paths.pid_file(name))
    if record is None:
        return []
    left = _stop_record(record, grace_s)
    if not left:
        paths.pid_file(name).unlink(missing_ok=True)
    return left


def up(
    settings: Settings,
    *,
    project_dir: Path | str | None = None,
    worker_env: Mapping[str, str] | None = None,
    deploy: bool = False,
    timeout_s: float = START_TIMEOUT_S,
) -> StackInfo:
    """Start the stack (the services not yet running) and wait until each is healthy.

    Args:
        settings: data directory and ports (``XRDPIPE_PREFECT_PORT``, ``XRDPIPE_MLFLOW_PORT``).
        project_dir: the folder with ``deploy/prefect.yaml`` (default: found, see
            :func:`find_project_dir`).
        worker_env: more variables for the worker and its flow runs.
        deploy: also deploy every deployment of ``deploy/prefect.yaml``.
        timeout_s: seconds each step may take to become healthy.

    Raises:
        StackError: a port is taken, a service exited or did not become healthy (the
            message holds the end of its log); what this call started is stopped again.
    """
    paths = StackPaths.for_settings(settings)
    paths.make()
    live = _live_records(paths)
    endpoints = _endpoints(settings, live)
    project = find_project_dir(project_dir)
    wanted = {"prefect-server": endpoints.prefect_port, "mlflow": endpoints.mlflow_port}
    for name, port in wanted.items():
        if name not in live and not _port_free(port):
            variable = "XRDPIPE_PREFECT_PORT" if name == "prefect-server" else "XRDPIPE_MLFLOW_PORT"
            raise StackError(
                f"port {port} of {HOST} is in use, {name} cannot start there; "
                f"stop what uses it or choose another port with {variable}"
            )
    started: list[str] = []
    try:
        waits = []
        if "prefect-server" not in live:
            record = _spawn(
                paths,
                "prefect-server",
                prefect_server_command(endpoints.prefect_port),
                {
                    "PREFECT_HOME": str(paths.prefect_home),
                    "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{paths.prefect_db}",
                    "PREFECT_API_URL": endpoints.prefect_api,
                    "PREFECT_UI_API_URL": endpoints.prefect_api,
                },
                paths.prefect_home,
                endpoints.prefect_port,
                endpoints.prefect_ui,
            )
            started.append(record.name)
            live[record.name] = record
            waits.append((record, lambda: prefect_healthy(endpoints)))
        if "mlflow" not in live:
            record = _spawn(
                paths,
                "mlflow",
                mlflow_server_command(paths, endpoints.mlflow_port),
                {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                paths.mlflow_dir,
                endpoints.mlflow_port,
                endpoints.mlflow_ui,
            )
            started.append(record.name)
            live[record.name] = record
            waits.append((record, lambda: mlflow_healthy(endpoints)))
        _wait(waits, timeout_s)
        if "prefect-worker" not in live:
            live["prefect-worker"] = start_worker(settings, worker_env, project, timeout_s)
            started.append("prefect-worker")
    except BaseException:
        for name in reversed(started):
            stop_service(settings, name)
        raise
    info = StackInfo(paths, endpoints, live, client_env(settings, endpoints, project))
    if deploy:
        deploy_all(info)
    return info


def down(settings: Settings, grace_s: float = STOP_GRACE_S) -> dict[str, list[int]]:
    """Stop every service (worker first); returns ``{service: pids left}`` for those stopped.

    Raises:
        StackError: a process survived SIGKILL (its pid is in the message).
    """
    paths = StackPaths.for_settings(settings)
    records = read_records(paths)
    result = {}
    for name in reversed(SERVICES):
        if name in records:
            result[name] = stop_service(settings, name, grace_s)
    left = {name: pids for name, pids in result.items() if pids}
    if left:
        raise StackError(f"processes survived SIGKILL: {left}")
    return result


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service: its pid file, whether it runs, and whether it answers its health check."""
    paths = StackPaths.for_settings(settings)
    records = read_records(paths)
    endpoints = _endpoints(settings, records)
    checks: dict[str, Callable[[], bool]] = {
        "prefect-server": lambda: prefect_healthy(endpoints),
        "mlflow": lambda: mlflow_healthy(endpoints),
        "prefect-worker": lambda: worker_online(endpoints),
    }
    out = []
    for name in SERVICES:
        record = records.get(name)
        running = record is not None and _process(record) is not None
        out.append(ServiceStatus(name, record, running, checks[name]() if running else None))
    return out


def deploy_all(info: StackInfo, timeout_s: float = 600.0) -> str:
    """``prefect --no-prompt deploy --all`` of ``deploy/prefect.yaml`` to the stack's server.

    Returns:
        The command's output.
    """
    project = info.client_env.get("XRDPIPE_PROJECT_DIR")
    if project is None:
        raise StackError(
            "no deploy/prefect.yaml found: run from the xrdpipe source tree or set "
            "XRDPIPE_PROJECT_DIR"
        )
    env = {**os.environ, **QUIET_ENV, "PREFECT_HOME": str(info.paths.prefect_home)}
    env |= info.client_env
    proc = subprocess.run(
        _python(
            "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml"
        ),
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    if proc.returncode != 0:
        raise StackError(
            f"prefect deploy failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc.stdout


def instructions(info: StackInfo) -> str:
    """What ``xrdpipe up`` prints: the UIs, the variables to export, what to run next."""
    exports = "\n".join(f"  export {k}={v}" for k, v in info.client_env.items())
    project = info.client_env.get("XRDPIPE_PROJECT_DIR", "<the xrdpipe source tree>")
    return (
        f"Prefect UI:  {info.endpoints.prefect_ui}\n"
        f"MLflow UI:   {info.endpoints.mlflow_ui}\n"
        f"logs and pid files: {info.paths.root}\n\n"
        f"In your shell:\n{exports}\n\n"
        "Deploy the flows (once; `xrdpipe up --deploy` does it for you) and run one:\n"
        f"  cd {project} && prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml\n"
        "  prefect deployment run simulate/cod --watch\n"
        "  prefect deployment run pipeline/demo --watch\n"
        "Stop everything with `xrdpipe down`."
    )
