"""Run it as users do: the local stack, deployments run by a worker, an existing Dask cluster.

One stack for the module (``xrdpipe.stack.up`` on free ports of 127.0.0.1, a temporary
data directory): a Prefect server, a process worker of pool ``xrdpipe`` and an MLflow
server. ``deploy/prefect.yaml`` is deployed to it and runs go through the ``prefect`` CLI,
as a user types them. The worker's flow runs read a catalog whose ``demo`` subset is the
offline demo cut down to 8 materials and a few strains, with ``tiny`` training presets.
The last test stops the stack and checks that no process of it is left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support import small_demo_catalog
from xrdpipe import stack as xstack
from xrdpipe.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
N_MATERIALS = 8
EXPERIMENTS = ("xrdpipe/phase-fractions", "xrdpipe/lattice-system")
MODELS = ("xrdpipe-phase-fractions-demo-N5-K3", "xrdpipe-lattice-system-demo")
RUN_TIMEOUT_S = 480


@dataclass
class RunningStack:
    settings: Settings
    info: xstack.StackInfo
    worker_env: dict[str, str]
    root: Path

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def cli_env(self) -> dict[str, str]:
        """The shell of a user who exported what ``xrdpipe up`` printed."""
        return {
            **os.environ,
            **xstack.QUIET_ENV,
            "PREFECT_HOME": str(self.info.paths.prefect_home),
            **self.info.client_env,
        }

    def prefect(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "prefect", *args],
            env=self.cli_env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, (
            f"prefect {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}\nworker log:\n" + worker_log_tail(self)
        )
        return proc.stdout

    def run_deployment(self, name: str, **params: str) -> str:
        """``prefect deployment run NAME --watch -p k=v``; the flow run's id."""
        args = ["deployment", "run", name, "--watch", "--watch-interval", "1"]
        args += ["--watch-timeout", str(RUN_TIMEOUT_S)]
        for key, value in params.items():
            args += ["-p", f"{key}={value}"]
        out = self.prefect(*args, timeout=RUN_TIMEOUT_S + 60)
        assert "Completed" in out, out[-3000:] + "\nworker log:\n" + worker_log_tail(self)
        match = re.search(r"UUID: ([0-9a-f-]{36})", out)
        assert match, out[-2000:]
        return match.group(1)

    def api(self, method: str, path: str, json: dict | None = None):
        import httpx

        response = httpx.request(
            method,
            f"{self.info.endpoints.prefect_api}{path}",
            json=json,
            timeout=30,
            trust_env=False,
        )
        response.raise_for_status()
        return response.json()

    def flow_run_logs(self, flow_run_ids: list[str]) -> list[str]:
        logs = self.api(
            "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": flow_run_ids}}, "limit": 200}
        )
        return [entry["message"] for entry in logs]

    def child_flow_runs(self, flow_run_id: str) -> list[dict]:
        """Subflow runs of a flow run (through their parent task runs)."""
        tasks = self.api(
            "POST", "/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}}
        )
        ids = [t["id"] for t in tasks]
        if not ids:
            return []
        return self.api(
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"parent_task_run_id": {"any_": ids}}},
        )


def worker_log_tail(running: RunningStack, lines: int = 60) -> str:
    log = running.info.paths.log_file("prefect-worker")
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no worker log)"


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory) -> RunningStack:
    root = tmp_path_factory.mktemp("e2e")
    catalog = small_demo_catalog(root / "catalog.yaml", N_MATERIALS, 8, 3, epochs=2)
    (root / "tmp").mkdir()
    settings = Settings(
        data_dir=root / "data",
        prefect_port=xstack.free_port(),
        mlflow_port=xstack.free_port(),
    )
    worker_env = {
        "XRDPIPE_CATALOG": str(catalog),
        "XRDPIPE_DASK_WORKERS": "1",
        "TMPDIR": str(root / "tmp"),
        "MPLCONFIGDIR": str(root / "mplconfig"),
    }
    started = time.perf_counter()
    info = xstack.up(settings, project_dir=REPO, worker_env=worker_env, deploy=True)
    print(f"stack up and deployed in {time.perf_counter() - started:.1f} s")
    try:
        yield RunningStack(settings, info, worker_env, root)
    finally:
        xstack.down(settings)


def test_up_starts_every_service_on_loopback_and_deploys(running_stack):
    states = {s.name: s for s in xstack.status(running_stack.settings)}
    assert set(states) == {"prefect-server", "mlflow", "prefect-worker"}
    assert all(s.running and s.healthy for s in states.values()), states
    paths = running_stack.info.paths
    assert paths.prefect_db.is_file() and paths.mlflow_db.is_file()
    for name in states:
        assert paths.pid_file(name).is_file() and paths.log_file(name).is_file()
    ports = {running_stack.settings.prefect_port, running_stack.settings.mlflow_port}
    for record in running_stack.info.services.values():
        for proc in xstack.service_processes(record):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip == "127.0.0.1", (record.name, conn)
                    ports.discard(conn.laddr.port)
    assert not ports, f"nothing listens on {ports}"
    listing = running_stack.prefect("deployment", "ls")
    for name in (
        "fetch/cod",
        "simulate/cod",
        "train/phase-fractions",
        "train/lattice-system",
        "evaluate/nk-grid",
        "pipeline/demo",
    ):
        assert name in listing, listing
    pools = running_stack.prefect("work-pool", "ls")
    assert "xrdpipe" in pools and "process" in pools


def test_deployment_simulate_cod_writes_the_store(running_stack):
    from xrdpipe.store import completed_materials, load_completed

    flow_run_id = running_stack.run_deployment("simulate/cod", subset='"demo"')
    store = running_stack.data_dir / "demo" / "patterns.zarr"
    assert (running_stack.data_dir / "demo" / "manifest.parquet").is_file()
    done = completed_materials(store)
    assert done.shape == (N_MATERIALS,) and done.all()
    ds = load_completed(store)
    assert ds.sizes["strain"] == 8 + 3 + 1
    assert (ds["n_peaks"].values > 0).all()
    logs = "\n".join(running_stack.flow_run_logs([flow_run_id]))
    assert "Dask scheduler: tcp://127.0.0.1:" in logs, logs[-2000:]


def test_pipeline_tracks_registers_and_a_refresh_does_no_work(running_stack):
    from mlflow.tracking import MlflowClient

    first = running_stack.run_deployment("pipeline/demo", preset='"tiny"')
    children = running_stack.child_flow_runs(first)
    assert {r["state_type"] for r in children} == {"COMPLETED"}, children
    names = {running_stack.api("GET", f"/flows/{r['flow_id']}")["name"] for r in children}
    # simulate/cod (the test before) made demo's manifest and store: the pipeline may find
    # them current and skip those stages, and says so; it always trains and evaluates
    assert {"train", "evaluate"} <= names <= {"fetch", "simulate", "train", "evaluate"}, names
    logs = "\n".join(running_stack.flow_run_logs([first]))
    for stage in ("fetch", "simulate"):
        assert stage in names or f"{stage}: skipped" in logs, (stage, logs[-2000:])

    url = running_stack.info.endpoints.mlflow_ui
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    runs = {}
    for name in EXPERIMENTS:
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, name
        found = client.search_runs([experiment.experiment_id])
        assert len(found) == 1 and found[0].info.status == "FINISHED", (name, found)
        assert found[0].data.tags["xrdpipe.subset"] == "demo"
        assert found[0].data.params["args.preset_name"] == "tiny"
        runs[name] = found[0]
    pf_metrics = runs["xrdpipe/phase-fractions"].data.metrics
    assert 0.0 <= pf_metrics["test_tvd_mean"] <= 1.0, pf_metrics
    # the grid's cell (N=5, K=3) is a second version of the phase-fraction model
    grid = client.get_experiment_by_name("xrdpipe/nk-grid")
    grid_runs = client.search_runs([grid.experiment_id])
    parent = [r for r in grid_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in grid_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(children) == 1 and parent[0].info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {
        "report.html",
        "figure3_tvd_vs_n.png",
        "grid_table.csv",
    }
    versions = {
        m: sorted(v.version for v in client.search_model_versions(f"name='{m}'")) for m in MODELS
    }
    assert versions == {MODELS[0]: ["1", "2"], MODELS[1]: ["1"]}, versions
    assert client.get_model_version_by_alias(MODELS[0], "candidate").run_id == (
        children[0].info.run_id
    )
    assert client.get_model_version_by_alias(MODELS[1], "candidate").run_id == (
        runs["xrdpipe/lattice-system"].info.run_id
    )
    # the first version became champion (none before); the grid's only if 2 SE better
    champion = client.get_model_version_by_alias(MODELS[0], "champion")
    assert champion.version in {"1", "2"}
    reports = list(running_stack.data_dir.rglob("reports/*.html"))
    assert len(reports) == 1 and "paper 002" in reports[0].read_text()
    # artifacts went through the server into the stack's artifact folder
    artifacts = {a.path for a in client.list_artifacts(runs["xrdpipe/lattice-system"].info.run_id)}
    assert {"results.json", "config.yaml"} <= artifacts, artifacts
    stored = list(running_stack.info.paths.mlflow_artifacts.rglob("results.json"))
    assert len(stored) == 3, stored  # the two trainings and the grid cell

    # a refresh that finds nothing new: nothing is simulated or trained again
    second = running_stack.run_deployment("pipeline/demo", preset='"tiny"')
    for name in EXPERIMENTS:
        experiment = client.get_experiment_by_name(name)
        assert len(client.search_runs([experiment.experiment_id])) == 1, name
    assert {
        m: sorted(v.version for v in client.search_model_versions(f"name='{m}'")) for m in MODELS
    } == versions
    assert len(client.search_runs([grid.experiment_id])) == 2  # no new grid
    logs = "\n".join(running_stack.flow_run_logs([second]))
    assert logs.count("not retraining") == 2, logs[-3000:]
    assert "the last report stands" in logs
    assert "simulating 'demo' again" not in logs


def test_mlflow_ui_shows_the_pipeline_experiments_and_models(running_stack, tmp_path):
    from tests.browser import CHROMIUM, mlflow_ui_texts

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (Debian package `chromium`; .ci/run installs it)")
    texts = mlflow_ui_texts(
        running_stack.info.endpoints.mlflow_ui,
        {"#/experiments": list(EXPERIMENTS), "#/models": list(MODELS)},
        tmp_path / "chromium-profile",
    )
    for name in EXPERIMENTS:
        assert name in texts["#/experiments"]
    for name in MODELS:
        assert name in texts["#/models"]


@pytest.fixture
def dask_cluster(running_stack, tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, stopped after."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    env = {
        **os.environ,
        "DASK_CONFIG": str(REPO / "deploy" / "dask"),  # as deploy/README.md says
        "DASK_TEMPORARY_DIRECTORY": str(tmp_path / "dask"),
    }
    port = xstack.free_port()
    address = f"tcp://127.0.0.1:{port}"
    commands = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        *(
            [
                dask,
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--name",
                f"w{i}",
                "--local-directory",
                str(tmp_path / f"w{i}"),
            ]
            for i in range(2)
        ),
    ]
    procs = []
    for i, cmd in enumerate(commands):
        log = (tmp_path / f"dask-{i}.log").open("wb")
        procs.append(
            subprocess.Popen(
                cmd,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        if i == 0:
            time.sleep(2)
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, procs
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_simulate_cod_runs_on_an_existing_dask_cluster(running_stack, dask_cluster):
    from distributed import Client

    from xrdpipe.store import completed_materials

    address, procs = dask_cluster
    settings = running_stack.settings
    assert xstack.stop_service(settings, "prefect-worker") == []
    xstack.start_worker(
        settings, {**running_stack.worker_env, "XRDPIPE_DASK_ADDRESS": address}, project_dir=REPO
    )
    flow_run_id = running_stack.run_deployment("simulate/cod", subset='"demo"', overwrite="true")
    logs = "\n".join(running_stack.flow_run_logs([flow_run_id]))
    assert f"Dask scheduler: {address}" in logs, logs[-2000:]
    with Client(address, timeout=30) as client:
        seen = client.run_on_scheduler(
            lambda dask_scheduler: {
                name: prefix.max_exec_time for name, prefix in dask_scheduler.task_prefixes.items()
            }
        )
        workers = client.scheduler_info()["workers"]
    assert seen.get("simulate-block", -1) > 0, seen  # blocks were computed on this cluster
    assert len(workers) == 2
    assert completed_materials(running_stack.data_dir / "demo" / "patterns.zarr").all()
    assert all(p.poll() is None for p in procs)  # the cluster outlives the flow run


def test_down_stops_every_process(running_stack):
    settings = running_stack.settings
    records = xstack.read_records(xstack.StackPaths.for_settings(settings))
    assert set(records) == {"prefect-server", "mlflow", "prefect-worker"}
    pids = {p.pid for r in records.values() for p in xstack.service_processes(r)}
    assert len(pids) >= 3
    stopped = xstack.down(settings)
    assert set(stopped) == set(records) and not any(stopped.values())
    left = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                left.append((pid, proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    assert not left, left
    assert not any(s.running for s in xstack.status(settings))
    for name in records:
        assert not xstack.StackPaths.for_settings(settings).pid_file(name).exists()
    assert xstack._port_free(settings.prefect_port) and xstack._port_free(settings.mlflow_port)
