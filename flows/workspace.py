"""The commands that change the workspace's versioned state: DVC (serialized, since its
repo lock does not wait), and publishing a generation: a git commit and tag of
`params.yaml`, `dvc.lock` and the small metrics files, and `dvc push` of the data.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from flywheel import layout
from flywheel.config import PublishConfig
from flywheel.stage import child_env

_DVC_LOCK = threading.Lock()
METRIC_FILES = (layout.METRICS, layout.JUDGE_METRICS, layout.GENERATE_METRICS, layout.FAILURE_PROFILE, layout.FACTOR_FAILURES,
                layout.SKILL_ACCURACY, layout.BFCL_ACCURACY, layout.TRAIN_LOSS)


def dvc(root: Path, *args: str, log=None) -> tuple[int, str]:
    """Run one DVC command (serialized), streaming its output line by line to `log`."""
    with _DVC_LOCK:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=root, env=child_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = []
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if log and line:
                log(line)
        return proc.wait(), "\n".join(lines)


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def commit_and_tag(root: Path, pc: PublishConfig, generation: str) -> list[str]:
    """Commit only the generation's versioned files (whatever else is staged stays out)
    and tag the commit; returns what was done. Nothing when `root` is not a git repo."""
    done: list[str] = []
    if git(root, "rev-parse", "--git-dir").returncode != 0 or not (pc.git_commit or pc.git_tag):
        return done
    if pc.git_commit:
        files = ["params.yaml", "dvc.lock", *[str(p) for p in (root / "data").glob("*/.gitignore")],
                 "data/.gitignore", *[str(layout.path(generation, f)) for f in METRIC_FILES]]
        files = [f for f in files if (root / f).exists()]
        add = git(root, "add", "--", *files)
        if add.returncode != 0:
            raise RuntimeError(f"git add failed: {' '.join(add.stderr.split())[:300]}")
        if git(root, "diff", "--cached", "--quiet", "--", *files).returncode != 0:
            commit = git(root, "-c", "user.name=flywheel", "-c", "user.email=flywheel@localhost",
                         "commit", "-q", "-m", f"flywheel: {generation}", "--", *files)
            if commit.returncode != 0:
                raise RuntimeError(f"git commit failed: {' '.join(commit.stderr.split())[:300]}")
            done.append("committed")
    if pc.git_tag:
        git(root, "tag", "-f", generation)
        done.append(f"tagged {generation}")
    return done


def push(root: Path) -> str:
    code, out = dvc(root, "push", "-q")
    if code != 0:
        raise RuntimeError(f"dvc push failed: {out.splitlines()[-1:]}")
    return "pushed"


def pull(root: Path, log=None) -> str:
    """`dvc pull` of every output `dvc.lock` names, from the default remote: a fresh clone
    (a deployment's worker) starts from the data the last generation pushed."""
    code, out = dvc(root, "pull", log=log)
    if code != 0:
        raise RuntimeError(f"dvc pull failed: {(out.splitlines() or [''])[-1]}")
    return "pulled"


def git_push(root: Path, generation: str) -> str:
    """Push the generation's commit (the checked-out branch) and its tag to `origin`."""
    branch = git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    refs = [f"HEAD:refs/heads/{branch}"] if branch and branch != "HEAD" else []
    proc = git(root, "push", "-q", "origin", *refs, f"+refs/tags/{generation}:refs/tags/{generation}")
    if proc.returncode != 0:
        raise RuntimeError(f"git push to origin failed: {' '.join(proc.stderr.split())[:300]}")
    return "pushed to origin"


def publish(root: Path, pc: PublishConfig, generation: str, *, to_origin: bool = False) -> str:
    """Commit and tag, `dvc push`, then (a deployment's clone) push commit and tag to origin:
    data first, so the origin never names a generation whose data the remote lacks."""
    done = commit_and_tag(root, pc, generation)
    if pc.dvc_push:
        done.append(push(root))
    if to_origin:
        done.append(git_push(root, generation))
    return ", ".join(done) or "nothing to publish"
