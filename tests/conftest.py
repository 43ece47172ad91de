"""Shared fixtures. The end-to-end fixture copies the project into a temp directory (a
git repo with DVC initialised) with a small configuration and runs the flow there once,
so real DVC, Prefect and MLflow run without touching the working tree."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.workspace import env, make_project, merge, run  # noqa: E402,F401  (the tests' helpers too)

SMALL = {
    "generations": {"gen-000": {"prev": "seed"}, "gen-001": {"prev": "gen-000"}},
    "prepare": {"seed_rows": 60, "eval_rows": 120, "plan_rows": 200,
                "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 96}},
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
