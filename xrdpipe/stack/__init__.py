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

Modules: :mod:`~xrdpipe.stack.processes` (pid-file records, spawning, stopping, ports) and
:mod:`~xrdpipe.stack.services` (commands, health, up/down/status, deploy, instructions); the
command line is :mod:`xrdpipe.cli.stack`.
"""

from __future__ import annotations

from xrdpipe.stack.processes import (
    HOST,
    QUIET_ENV,
    SERVICES,
    STOP_GRACE_S,
    ServiceRecord,
    StackError,
    StackPaths,
    _port_free,
    free_port,
    read_records,
    service_processes,
)
from xrdpipe.stack.services import (
    HEALTH_TIMEOUT_S,
    START_TIMEOUT_S,
    WORK_POOL,
    WORKER_NAME,
    Endpoints,
    ServiceStatus,
    StackInfo,
    client_env,
    deploy_all,
    down,
    find_project_dir,
    instructions,
    mlflow_healthy,
    mlflow_server_command,
    prefect_healthy,
    prefect_server_command,
    start_worker,
    status,
    stop_service,
    up,
    worker_command,
    worker_online,
)

__all__ = [
    "Endpoints",
    "HEALTH_TIMEOUT_S",
    "HOST",
    "QUIET_ENV",
    "SERVICES",
    "START_TIMEOUT_S",
    "STOP_GRACE_S",
    "ServiceRecord",
    "ServiceStatus",
    "StackError",
    "StackInfo",
    "StackPaths",
    "WORKER_NAME",
    "WORK_POOL",
    "_port_free",
    "client_env",
    "deploy_all",
    "down",
    "find_project_dir",
    "free_port",
    "instructions",
    "mlflow_healthy",
    "mlflow_server_command",
    "prefect_healthy",
    "prefect_server_command",
    "read_records",
    "service_processes",
    "start_worker",
    "status",
    "stop_service",
    "up",
    "worker_command",
    "worker_online",
]
