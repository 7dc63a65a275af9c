"""The stack's processes: pid-file records, spawning, stopping, ports and logs.

Each service runs detached in its own session (process group), logs to
``<data>/stack/logs/<name>.log`` and has a pid file ``<data>/stack/<name>.pid`` (JSON: pid,
process group, start time, port, URL). Stopping a service sends SIGTERM to every process of
it (its group and every descendant), waits, then SIGKILL to what is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from xrdpipe.config import Settings
from xrdpipe.errors import XrdpipeError

HOST = "127.0.0.1"
"""Every service of the stack binds to loopback only."""
SERVICES = ("prefect-server", "mlflow", "prefect-worker")
"""Start order; ``down`` stops them in reverse."""
STOP_GRACE_S = 20.0
"""Seconds between SIGTERM and SIGKILL."""
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


def read_records(paths: StackPaths) -> dict[str, ServiceRecord]:
    """The pid files present, by service name."""
    records = {}
    for name in SERVICES:
        record = ServiceRecord.read(paths.pid_file(name))
        if record is not None:
            records[name] = record
    return records


def _live_records(paths: StackPaths) -> dict[str, ServiceRecord]:
    """Pid files of services that still run; stale pid files are removed."""
    live = {}
    for name, record in read_records(paths).items():
        if _process(record) is not None:
            live[name] = record
        else:
            paths.pid_file(name).unlink(missing_ok=True)
    return live
