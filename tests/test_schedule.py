"""`flywheel schedule` against a real local Prefect server: the deployment gets scheduled
runs from its cron, and one of them runs the flywheel end to end (one new generation).
A run of the deployment that comes due while another is going is cancelled by the server,
not failed: with a cron of every minute, that happens whenever a run takes longer than a
minute, and the test also asks for one such run on purpose."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest
import yaml

from conftest import env, free_port
from servers import PrefectServer, stop


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@pytest.mark.e2e
def test_nightly_schedule_runs_the_flywheel(small_project, tmp_path):
    project = tmp_path / "scheduled"
    shutil.copytree(small_project, project, symlinks=True)
    server = PrefectServer(tmp_path / "prefect-home", env())
    api = server.url
    e = dict(server.env, PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="2")
    served = None
    try:
        log = open(tmp_path / "serve.log", "w")
        served = subprocess.Popen([sys.executable, "-m", "flows.cli", "--project", str(project), "schedule",
                                   "--cron", "* * * * *"], env=e, cwd=project, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deployment = wait_for(lambda: _post(f"{api}/deployments/filter", {}), 120, "the deployment")[0]
        assert deployment["name"] == "nightly"
        assert deployment["schedules"][0]["schedule"]["cron"] == "* * * * *"
        assert deployment["parameters"] == {"project": str(project), "generations": 1}
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
        scheduled = wait_for(lambda: _post(f"{api}/flow_runs/filter", {}), 90, "scheduled runs")
        assert all(r["deployment_id"] == deployment["id"] for r in scheduled)

        def runs_in(*state_types: str) -> list:
            runs = _post(f"{api}/flow_runs/filter", {})
            failed = [r for r in runs if r["state_type"] in ("FAILED", "CRASHED")]
            assert not failed, (failed[0]["state"], (tmp_path / "serve.log").read_text()[-3000:])
            return [r for r in runs if r["state_type"] in state_types]

        first = wait_for(lambda: runs_in("RUNNING"), 150, "a scheduled run to start")[0]
        # A second run while the first is going: the server cancels it before it starts.
        # (asked again while the server answers with an error body: a busy SQLite under load)
        extra = wait_for(lambda: (lambda r: r if "id" in r else None)(httpx.post(
            f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).json()),
            60, "the second run to be created")

        def settled(run_id: str):
            run_ = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
            return run_ if run_["state_type"] in ("CANCELLED", "COMPLETED", "FAILED", "CRASHED") else None

        end = wait_for(lambda: settled(extra["id"]), 400, "the overlapping run to be cancelled or done")
        if end["state_type"] == "CANCELLED":  # proposed while the first was running: refused by the limit
            assert "concurrency limit" in end["state"]["message"], end["state"]
        else:  # on a loaded machine the runner may propose it only once the first is over: then it ran alone
            assert end["state_type"] == "COMPLETED", end["state"]
            first_end = httpx.get(f"{api}/flow_runs/{first['id']}", timeout=10).json()["end_time"]
            assert first_end and datetime.fromisoformat(first_end) <= datetime.fromisoformat(end["start_time"])
        assert first["id"] in {r["id"] for r in runs_in("RUNNING", "COMPLETED")}  # the first one went on
        wait_for(lambda: runs_in("COMPLETED"), 300, "a completed scheduled run")
        # Every minute brings another run: stop serving, then read what the first one published
        # under its tag (the files themselves may be mid-write by a later run the stop killed).
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(30)

        def published(path: str) -> dict:
            return yaml.safe_load(subprocess.run(["git", "show", f"gen-002:{path}"], cwd=project, check=True,
                                                 capture_output=True, text=True).stdout)

        assert list(published("params.yaml")["generations"]) == ["gen-000", "gen-001", "gen-002"]
        assert "expand@gen-002" in published("dvc.lock")["stages"]
    finally:
        stop(served)
        server.close()


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _post(url: str, body: dict) -> list:
    try:
        return httpx.post(url, json=body, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return []


@pytest.mark.e2e
def test_ui_serves_mlflow_and_prefect_on_localhost_and_stops_cleanly(small_project, tmp_path):
    mlflow_port, prefect_port = free_port(), free_port()
    e = env()
    e.pop("PREFECT_API_URL", None)
    e["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    ui = subprocess.Popen([sys.executable, "-m", "flows.cli", "--project", str(small_project), "ui",
                           "--mlflow-port", str(mlflow_port), "--prefect-port", str(prefect_port)],
                          env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = ui.stdout.readline()
        assert first.strip() == f"MLflow:  http://127.0.0.1:{mlflow_port}", first
        assert _ok(f"http://127.0.0.1:{mlflow_port}/health")
        assert _ok(f"http://127.0.0.1:{prefect_port}/api/health")
        # Every socket the servers listen on is bound to localhost (docs/reliability.md).
        import psutil

        listening = set()
        for p in [psutil.Process(ui.pid), *psutil.Process(ui.pid).children(recursive=True)]:
            try:
                listening |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                              if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                pass
        assert {mlflow_port, prefect_port} <= {port for _, port in listening}, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    finally:
        ui.send_signal(signal.SIGTERM)
        ui.wait(30)
    wait_for(lambda: not _ok(f"http://127.0.0.1:{mlflow_port}/health")
             and not _ok(f"http://127.0.0.1:{prefect_port}/api/health"), 30, "the UIs to stop")
