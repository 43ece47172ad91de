"""Shared fixtures. The end-to-end fixture copies the project into a temp directory (a
git repo with DVC initialised) with a small configuration, so real `dvc repro` runs
there without touching the working tree."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flywheel.stage import child_env  # noqa: E402

SMALL = {
    "generations": {"gen-000": {"prev": "seed"}, "gen-001": {"prev": "gen-000"}},
    "prepare": {"seed_rows": 60, "eval_rows": 120, "plan_rows": 200,
                "model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 96}},
    "train": {"steps": 40, "batch_size": 32, "warmup_steps": 5, "log_every": 10},
    "expand": {"budget": 200},
}


def env() -> dict[str, str]:
    return child_env()


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "generations" else v
    return out


def make_project(dest: Path, overrides: dict) -> Path:
    for name in ("flywheel", "tasks", "flows", "domains"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))
    (dest / "data").mkdir()
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "ci@example.invalid"], dest)
    run(["git", "config", "user.name", "ci"], dest)
    run([sys.executable, "-m", "dvc", "init", "-q"], dest)
    run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(dest / "remote")], dest)
    return dest


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


@pytest.fixture(scope="session")
def small_project(tmp_path_factory) -> Path:
    """A small two-generation project, reproduced once with real `dvc repro`."""
    project = make_project(tmp_path_factory.mktemp("flywheel"), SMALL)
    run([sys.executable, "-m", "dvc", "repro"], project)
    return project


@pytest.fixture(scope="session")
def harness():
    """One Prefect test server for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
