"""Shared fixtures. The end-to-end fixture copies the project into a temp directory (a
git repo with DVC initialised) with a small configuration and runs the flow there once,
so real DVC, Prefect and MLflow run without touching the working tree."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
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

# Two torch processes at once (two pytest-xdist workers, `make test`) take 2.5 to 4 times
# as long each while idle OpenMP threads spin; with sleeping ones each takes about as long
# as one alone (experiments/omp_contention.py). Sleeping costs a process alone about 30%, so
# only a run with several workers asks for it; stage processes inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SMALL = {
    "generations": {"gen-000": {"prev": "seed"}, "gen-001": {"prev": "gen-000"}},
    "prepare": {"seed_rows": 60, "eval_rows": 120, "plan_rows": 200,
                "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 128}},
    # one thread for the student's products: two workers train at once on 2 cores, and
    # OpenBLAS threads that wait spinning would take the other worker's core
    "train": {"steps": 40, "batch_size": 32, "warmup_steps": 5, "log_every": 10, "threads": 1},
    # the error-driven mix (the default before docs/loop.md), so that the tests follow a
    # failure's lineage through the plan; the default `random` runs in tests/test_loop_experiment.py
    "expand": {"budget": 200, "strategy": {"error_driven": 0.7, "random": 0.3}},
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
# measurably worse (tests/test_flow.py's gate test). Its plan is targeted and reads every
# number the probe writes (the loss orders the failures, the perplexity makes the
# borderline and mastered rows, which compose down-weights), so the tiny reference
# (tests/test_reference.py) fails on a CPU where any of them has other bytes.
SHARED = merge(SMALL, {"prepare": {"model": {"n_layer": 2, "n_embd": 64, "n_head": 2}},
                       "train": {"steps": 150, "lr": 0.003}, "compose": {"mastered_weight": 0.5},
                       "expand": {"strategy": {"error_driven": 0.6, "borderline": 0.1, "random": 0.3}}})


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
    """One generation whose judge is a committee of one on the test server (bench/llm_server.py),
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
    from bench.llm_server import FakeLLM

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


# ---- Two workers (pytest-xdist, `make test` runs `-n 2`) ----
# Each worker is its own process with its own session fixtures, so every test file that
# uses one of the expensive shared workspaces must run in the same worker, or the
# workspace is built twice. xdist's `--dist loadgroup` would do that, but its group marker
# is lost under pytest 9 (it renames `item._nodeid`, which pytest 9 no longer reads), so
# the scheduler below groups whole files instead: a file that names a shared fixture goes
# with the other files that name it; every other file is a unit of its own.
SHARED_FIXTURES = {"small_run": ("small_run", "small_project"), "unkilled_run": ("unkilled_run",)}

# The units that take longest start first, so that the short files fill in at the end
# (serial seconds by file in docs/testing.md's table); the rest keep collection order.
START_FIRST = ("small_run", "tests/test_hf_student.py", "unkilled_run", "tests/test_bench.py",
               "tests/test_llm_stages.py", "tests/test_llm_flow.py")


def worker_unit(nodeid: str) -> str:
    """The unit of work a test (or test file) belongs to: the shared fixture its file
    names, or the file itself."""
    return _file_unit(nodeid.split("::", 1)[0])


@functools.cache
def _file_unit(path: str) -> str:
    file = ROOT / path
    if not file.is_file():  # a node id not relative to the project (pytest run from elsewhere)
        return path
    text = file.read_text()
    for unit, names in SHARED_FIXTURES.items():
        if any(re.search(rf"\b{name}\b", text) for name in names):
            return unit
    return path


def pytest_collection_modifyitems(config, items):
    """Heaviest units first (stable: within a file the order stays as written)."""
    rank = {unit: i for i, unit in enumerate(START_FIRST)}
    items.sort(key=lambda item: rank.get(worker_unit(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class BySharedFixture(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_unit(nodeid)

    config.option.loadscopereorder = False  # keep the order pytest_collection_modifyitems made
    return BySharedFixture(config, log)


DURATIONS = "FLYWHEEL_DURATIONS"  # a path: where the time went, per unit of work (.ci/run sets it)
_STARTED: list[float] = []


def pytest_sessionstart(session):
    import time

    _STARTED.append(time.monotonic())


def durations(reports, wall: float, workers: int) -> dict:
    """Seconds per unit of work (a test file, or the files sharing a workspace) summed over
    setup, call and teardown, most first; with the commit and the CPU that measured them."""
    from bench import commit, cpu_model

    per: dict[str, float] = {}
    tests = set()
    for report in reports:
        per[worker_unit(report.nodeid)] = per.get(worker_unit(report.nodeid), 0.0) + report.duration
        tests.add(report.nodeid)
    units = dict(sorted(((u, round(t, 1)) for u, t in per.items()), key=lambda kv: -kv[1]))
    return {"commit": commit(), "cpu": cpu_model(), "tests": len(tests), "workers": workers,
            "wall_s": round(wall, 1), "serial_s": round(sum(per.values()), 1), "units": units}


def pytest_terminal_summary(terminalreporter, config):
    """The lines tests record as `reproducibility` (tests/test_reference.py: which CPU made
    the tiny reference and which one checked it), at the end of the run, workers included;
    with FLYWHEEL_DURATIONS set, where the time went (written there as JSON too)."""
    import time

    lines = [value for key in ("passed", "failed") for report in terminalreporter.stats.get(key, [])
             for name, value in getattr(report, "user_properties", []) if name == "reproducibility"]
    if lines:
        terminalreporter.section("reproducibility")
        for line in lines:
            terminalreporter.write_line(line)
    target = os.environ.get(DURATIONS)
    if target and _STARTED and not hasattr(config, "workerinput"):
        reports = [r for key in ("passed", "failed", "skipped", "error", "")
                   for r in terminalreporter.stats.get(key, []) if hasattr(r, "duration") and hasattr(r, "nodeid")]
        found = durations(reports, time.monotonic() - _STARTED[0], int(getattr(config.option, "numprocesses", 0) or 0))
        Path(target).write_text(json.dumps(found, indent=1) + "\n")
        terminalreporter.section("where the time went (seconds per unit of work, summed over workers)")
        for unit, seconds in found["units"].items():
            terminalreporter.write_line(f"{seconds:8.1f}  {unit}")
        terminalreporter.write_line(f"{found['serial_s']:8.1f}  in all, {found['wall_s']:.1f} s of wall time, "
                                    f"{found['tests']} tests, {found['workers']} workers")
