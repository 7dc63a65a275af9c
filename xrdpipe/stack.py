"""The local stack: a Prefect server, a process worker and an MLflow server on 127.0.0.1.

``xrdpipe up`` starts, in this order,

1. ``prefect server start`` with its SQLite database in ``<data>/stack/prefect/prefect.db``
   (``PREFECT_HOME`` is ``<data>/stack/prefect``), and ``mlflow server`` with a SQLite
   backend ``<data>/stack/mlflow/mlflow.db`` and proxied artifacts under
   ``<data>/stack/mlflow/artifacts``, both at once;
2. when both answer their health checks (``GET /api/health``, ``GET /health``), one
   ``prefect worker start --pool xrdpipe --type process`` whose environment points every
   flow run at that Prefect API, at that MLflow server and at the data directory (and
   passes on ``XRDPIPE_DASK_ADDRESS`` and the rest of the caller's environment).

Each service runs detached in its own session (process group), logs to
``<data>/stack/logs/<name>.log`` and has a pid file ``<data>/stack/<name>.pid`` (JSON: pid,
process group, start time, port, URL). ``xrdpipe down`` sends SIGTERM to every process of
each service (its group and every descendant, including flow runs and their Dask workers),
waits, sends SIGKILL to what is left, and checks that nothing remains. Ports come from the
settings (``XRDPIPE_PREFECT_PORT``, ``XRDPIPE_MLFLOW_PORT``). Nothing binds to anything but
127.0.0.1.

Prefect is driven through its command line only: nothing here imports prefect or mlflow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import psutil
import typer

from xrdpipe.config import Settings
from xrdpipe.errors import XrdpipeError

HOST = "127.0.0.1"
"""Every service of the stack binds to loopback only."""
WORK_POOL = "xrdpipe"
"""The process work pool of ``deploy/prefect.yaml``."""
WORKER_NAME = "xrdpipe-local"
SERVICES = ("prefect-server", "mlflow", "prefect-worker")
"""Start order; ``down`` stops them in reverse."""
START_TIMEOUT_S = 180.0
"""A fresh Prefect database takes ~20 s to migrate and MLflow ~15 s on 2 busy cores."""
STOP_GRACE_S = 20.0
"""Seconds between SIGTERM and SIGKILL."""
HEALTH_TIMEOUT_S = 3.0
"""Timeout of one health request."""
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
"""No telemetry from any service."""

_CHILDREN: dict[int, subprocess.Popen] = {}
"""Services started by this process, kept to reap them (no zombies in a long-lived caller)."""


class StackError(XrdpipeError):
    """The local stack could not be started, checked or stopped (names the service and log)."""


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its databases, artifacts, logs and pid files."""

    root: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> StackPaths:
        """``<data_dir>/stack`` (absolute)."""
        return cls(Path(settings.data_dir).resolve() / "stack")

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def prefect_db(self) -> Path:
        return self.prefect_home / "prefect.db"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def make(self) -> None:
        for folder in (self.prefect_home, self.mlflow_artifacts, self.logs):
            folder.mkdir(parents=True, exist_ok=True)


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
class ServiceRecord:
    """One started service, as written to its pid file."""

    name: str
    pid: int
    pgid: int
    create_time: float
    log: str
    cmd: list[str]
    port: int | None = None
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """The stack's own variables given to the service (not the inherited environment)."""

    @classmethod
    def read(cls, path: Path) -> ServiceRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


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


# --- processes ------------------------------------------------------------------------------


def _process(record: ServiceRecord) -> psutil.Process | None:
    """The service's leader process if it still runs (same pid *and* start time)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 1.0:
            return None  # the pid was reused
        return proc if _is_running(proc) else None
    except psutil.Error:
        return None


def _is_running(proc: psutil.Process) -> bool:
    child = _CHILDREN.get(proc.pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def service_processes(record: ServiceRecord) -> list[psutil.Process]:
    """Every live process of a service: its group, its leader and all their descendants.

    Flow runs may start their own sessions; they are found as descendants of the worker.
    """
    found: dict[int, psutil.Process] = {}
    leader = _process(record)
    roots = [leader] if leader is not None else []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == record.pgid and proc.pid != os.getpid():
                roots.append(proc)
        except (OSError, psutil.Error):
            continue
    for root in roots:
        found[root.pid] = root
        try:
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            continue
    return [p for p in found.values() if _is_running(p)]


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def _stop_record(record: ServiceRecord, grace_s: float) -> list[int]:
    """SIGTERM every process of a service, SIGKILL what is left; the pids still alive."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0), (signal.SIGKILL, 5.0)):
        procs = service_processes(record)
        if not procs:
            break
        for proc in procs:
            try:
                proc.send_signal(sig)
            except psutil.Error:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap()
            if not any(_is_running(p) for p in procs):
                break
            time.sleep(0.2)
    _reap()
    return [p.pid for p in service_processes(record)]


def _port_free(port: int) -> bool:
    """Nothing listens on the port (connections in TIME_WAIT do not count, as for a server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port of 127.0.0.1 that is free now (for tests and ``--port 0`` style use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: str | Path, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
    candidates += [Path(__file__).resolve().parents[1], Path.cwd()]
    for candidate in candidates:
        if candidate and (Path(candidate) / "deploy" / "prefect.yaml").is_file():
            return Path(candidate).resolve()
    if explicit is not None:
        raise StackError(f"project_dir {str(explicit)!r} has no deploy/prefect.yaml")
    return None


# --- start, check, stop -------------------------------------------------------------------------


def _spawn(
    paths: StackPaths,
    name: str,
    cmd: list[str],
    env_overrides: Mapping[str, str],
    cwd: Path,
    port: int | None = None,
    url: str | None = None,
) -> ServiceRecord:
    log = paths.log_file(name)
    env = {**os.environ, **QUIET_ENV, **env_overrides}
    with log.open("ab") as fh:
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = time.time()
    record = ServiceRecord(
        name=name,
        pid=proc.pid,
        pgid=proc.pid,  # start_new_session: the leader's pid is the group's id
        create_time=create_time,
        log=str(log),
        cmd=cmd,
        port=port,
        url=url,
        env=dict(env_overrides),
    )
    paths.pid_file(name).write_text(json.dumps(asdict(record), indent=2))
    return record


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


def read_records(paths: StackPaths) -> dict[str, ServiceRecord]:
    """The pid files present, by service name."""
    records = {}
    for name in SERVICES:
        record = ServiceRecord.read(paths.pid_file(name))
        if record is not None:
            records[name] = record
    return records


def _endpoints(settings: Settings, records: Mapping[str, ServiceRecord]) -> Endpoints:
    prefect = records.get("prefect-server")
    mlflow = records.get("mlflow")
    return Endpoints(
        prefect.port if prefect and prefect.port else settings.prefect_port,
        mlflow.port if mlflow and mlflow.port else settings.mlflow_port,
    )


def _live_records(paths: StackPaths) -> dict[str, ServiceRecord]:
    """Pid files of services that still run; stale pid files are removed."""
    live = {}
    for name, record in read_records(paths).items():
        if _process(record) is not None:
            live[name] = record
        else:
            paths.pid_file(name).unlink(missing_ok=True)
    return live


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


# --- command line -------------------------------------------------------------------------------


DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (else XRDPIPE_DATA_DIR).")
]


def _cli_settings(data_dir: Path | None) -> Settings:
    settings = Settings()
    return settings if data_dir is None else settings.model_copy(update={"data_dir": data_dir})


def _cli_fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def up_command(
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Also deploy every deployment of prefect.yaml.")
    ] = False,
    project_dir: Annotated[
        Path | None, typer.Option("--project-dir", help="Folder with deploy/prefect.yaml.")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start the local stack: Prefect server, a worker of pool xrdpipe, MLflow server."""
    settings = _cli_settings(data_dir)
    typer.echo(f"starting the stack under {StackPaths.for_settings(settings).root} ...")
    try:
        info = up(settings, project_dir=project_dir, deploy=deploy)
    except XrdpipeError as exc:
        _cli_fail(exc)
    for record in info.services.values():
        typer.echo(f"  {record.name}: pid {record.pid}, log {record.log}")
    if deploy:
        typer.echo("deployed every deployment of deploy/prefect.yaml")
    typer.echo(instructions(info))


def down_command(data_dir: DataDirOpt = None) -> None:
    """Stop every process of the local stack (SIGTERM, then SIGKILL)."""
    try:
        stopped = down(_cli_settings(data_dir))
    except XrdpipeError as exc:
        _cli_fail(exc)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def status_command(data_dir: DataDirOpt = None) -> None:
    """Show which services of the local stack run: pids, health and UI URLs."""
    states = status(_cli_settings(data_dir))
    for s in states:
        if not s.running or s.record is None:
            typer.echo(f"{s.name:15s} stopped")
            continue
        health = "healthy" if s.healthy else "NOT answering"
        where = f"  {s.record.url}" if s.record.url else ""
        typer.echo(f"{s.name:15s} running (pid {s.record.pid}), {health}{where}")
    if not any(s.running for s in states):
        raise typer.Exit(code=1)


def register_cli(app: typer.Typer) -> None:
    """Add ``up``, ``down`` and ``status`` to the ``xrdpipe`` command line."""
    app.command("up")(up_command)
    app.command("down")(down_command)
    app.command("status")(status_command)
