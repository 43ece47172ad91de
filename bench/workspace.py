"""Fresh flywheel workspaces for benchmarks, experiments and tests: a copy of the code,
`dvc.yaml` and `params.yaml` (with overrides) in a new directory, with DVC initialised,
so that real `dvc repro` and `flywheel run` work there without touching the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from bench import ROOT
from flywheel.config import merge  # noqa: F401  (callers use workspace.merge)

CODE = ("flywheel", "tasks", "flows", "domains", "models", "logs")


def env() -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from flywheel.stage import child_env

    return child_env()


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_project(dest: Path, overrides: dict, *, git: bool = True) -> Path:
    """A workspace at `dest` with params.yaml = the checkout's, merged with `overrides`.
    With `git`, also a git repository with a local DVC remote (what `flywheel run`
    publishes to); without, DVC runs with --no-scm."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in CODE:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    write_params(dest, overrides)
    (dest / "data").mkdir()
    if git:
        run(["git", "init", "-q"], dest)
        run(["git", "config", "user.email", "ci@example.invalid"], dest)
        run(["git", "config", "user.name", "ci"], dest)
        run([sys.executable, "-m", "dvc", "init", "-q"], dest)
        run([sys.executable, "-m", "dvc", "remote", "add", "-d", "local", str(dest / "remote")], dest)
    else:
        run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], dest)
    # the checkout's .dvcignore over the one `dvc init` writes: bytecode the stages' Python
    # leaves in the code folders must not change their md5s
    shutil.copy(ROOT / ".dvcignore", dest / ".dvcignore")
    return dest


def write_params(dest: Path, overrides: dict) -> None:
    """dest/params.yaml: the checkout's params.yaml merged with `overrides`."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(merge(params, overrides), sort_keys=False))


def generations(n: int, start: int = 0) -> dict:
    """params.yaml's `generations` block for gen-<start> .. gen-<start+n-1>, chained."""
    return {f"gen-{i:03d}": {"prev": "seed" if i == 0 else f"gen-{i - 1:03d}"} for i in range(start, start + n)}
