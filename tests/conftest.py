"""Shared fixtures. The end-to-end fixture copies the project into a temp directory (a
git repo with DVC initialised) with a small configuration and runs the flow there once,
so real DVC, Prefect and MLflow run without touching the working tree."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.workspace import env, make_project, merge, run  # noqa: E402,F401  (the tests' helpers too)

SMALL = {
    "generations": {"gen-000": {"prev": "seed"}, "gen-001": {"prev": "gen-000"}},
    "prepare": {"seed_rows": 60, "eval_rows": 120, "plan_rows": 200,
                "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
    "train": {"steps": 40, "batch_size": 32, "warmup_steps": 5, "log_every": 10},
    "expand": {"budget": 200},
}


@contextlib.contextmanager
def changed_params(project: Path, section: str, **values):
    """params.yaml with `section` updated for the block's duration, then restored."""
    path = project / "params.yaml"
    original = path.read_text()
    cfg = yaml.safe_load(original)
    cfg[section].update(values)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


# The shared workspace's student is big enough to learn in 150 steps, so a ruined one is
# measurably worse (tests/test_flow.py's gate test).
SHARED = merge(SMALL, {"prepare": {"model": {"n_layer": 2, "n_embd": 64, "n_head": 2}},
                       "train": {"steps": 150, "lr": 0.003}})


@pytest.fixture(scope="session")
def small_run(harness, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The session's one two-generation workspace, made by the Prefect flow (real DVC
    stages, MLflow on SQLite, git commits): the project and the flow's results. Tests that
    change it put it back as it was; tests that need to change it for good copy it."""
    from flows.flywheel import flywheel

    project = make_project(tmp_path_factory.mktemp("flywheel"), SHARED)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "init"], project)
    return project, flywheel(project=str(project))


@pytest.fixture(scope="session")
def small_project(small_run) -> Path:
    return small_run[0]


def free_port() -> int:
    """A localhost port nothing listens on (until something is started there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def judged_params(url: str) -> dict:
    """One generation whose judge is a committee of one on the test server (tests/llm_server.py),
    with training long enough to be killed in (tests/reliability/)."""
    judge = {"backend": "openai", "base_url": url, "model": "judge", "concurrency": 2, "max_retries": 1,
             "backoff_s": 0.05}
    return merge(SMALL, {"generations": {"gen-000": {"prev": "seed"}}, "judge": {"committee": [judge]},
                         "train": {"steps": 200}, "publish": {"dvc_push": False}})


def label_ok(messages: list, body: dict) -> str:
    """The test judge's answer: every label is right."""
    return json.dumps({"verdict": "label_ok", "analysis": "fine"})


@pytest.fixture(scope="session")
def unkilled_run(harness, tmp_path_factory):
    """`flywheel run` of `judged_params` from start to end, never killed, with MLflow's server
    unreachable throughout. Two reliability tests read it: the MLflow outage test (what the
    run did without MLflow, then the backfill) and the kill test (its dvc.lock md5s are what
    a killed and resumed run must end with). Returns the project, the finished process,
    the md5s and the judge requests, taken as the run left them."""
    from prefect.settings import PREFECT_API_URL

    from flows.lineage import lock_md5s
    from llm_server import FakeLLM

    with FakeLLM(label_ok, latency=0.02) as server:
        params = judged_params(server.url)
        params["lineage"] = {"tracking_uri": f"http://127.0.0.1:{free_port()}"}  # nothing listens
        project = make_project(tmp_path_factory.mktemp("unkilled"), params)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "init"], project)
        e = env() | {"PREFECT_API_URL": PREFECT_API_URL.value(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
        proc = subprocess.run([str(Path(sys.executable).parent / "flywheel"), "run"], cwd=project, env=e,
                              capture_output=True, text=True)
        return SimpleNamespace(project=project, proc=proc, md5s=lock_md5s(project), requests=server.requests)


@pytest.fixture(scope="session")
def harness():
    """One Prefect test server for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def shared_prefect(harness):
    """`flywheel run` subprocesses of this module talk to the session's Prefect test server
    instead of each starting a temporary one (about 15 s a run)."""
    import os

    from prefect.settings import PREFECT_API_URL

    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
    yield os.environ["PREFECT_API_URL"]
    if old is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = old
