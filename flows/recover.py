"""Repair what a killed run can leave half-done, before the next run starts.

The run lock (flows/runlock.py) tells a killed run apart from a finished one: a killed run
leaves its holder's text behind. When the next run clears that stale lock, `after_kill`
repairs the two files the killed run may have been writing with tools the flywheel does not
own:

- `dvc.lock`. DVC rewrites it in place (it opens the file with "w+", then dumps the YAML),
  so a run killed during that write leaves a truncated file, and every later `dvc` command
  fails on it. After each stage DVC finishes, the flow keeps a copy
  (`.flywheel/dvc.lock.good`, written atomically: `keep_good`). If `dvc.lock` does not pass
  DVC's own lock-file schema, the copy is put back. DVC then reruns the stage whose entry
  was lost (or restores it from its run cache); stage outputs are deterministic, so the run
  ends with the same md5s as one never killed. A truncated file that still loads (cut at a
  line end) only lacks its last entries, which DVC reruns; a readable `dvc.lock` is never
  replaced, so one a user checked out by hand is kept.
- `.git/index.lock`. A run killed during `publish`'s `git add` or `git commit` leaves git's
  lock behind, and every later git command refuses to run. It is removed only when it was
  made after the killed run started and no git process is running in the workspace.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import yaml

from flywheel import store

LOCK = Path("dvc.lock")
GOOD = Path(".flywheel") / "dvc.lock.good"
GIT_INDEX_LOCK = Path(".git") / "index.lock"


def keep_good(root: Path) -> None:
    """Save the current dvc.lock as the last good copy (after a stage DVC finished)."""
    lock = Path(root) / LOCK
    if lock.exists():
        with store.atomic_file(Path(root) / GOOD) as tmp:
            tmp.write_bytes(lock.read_bytes())


def loads(text: str) -> bool:
    """Whether DVC can read this dvc.lock text: YAML that its lock-file schema accepts."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA

    try:
        COMPILED_LOCKFILE_SCHEMA(yaml.safe_load(text))
    except Exception:  # noqa: BLE001 - any YAML or schema error: DVC would refuse it too
        return False
    return True


def repair_dvc_lock(root: Path) -> str:
    """Put the last good copy back if dvc.lock does not load; a note of what was done ("" if nothing)."""
    lock, good = Path(root) / LOCK, Path(root) / GOOD
    if not lock.exists() or not good.exists():
        return ""
    if loads(lock.read_text(encoding="utf-8", errors="replace")):
        return ""
    kept = good.read_bytes()
    if not loads(kept.decode("utf-8", errors="replace")):
        return f"{lock}: unreadable (left half-written by a killed run?) and its last good copy {good} is too"
    with store.atomic_file(lock) as tmp:
        tmp.write_bytes(kept)
    return (f"{lock} was left half-written by the killed run; put back the copy saved after its last "
            "finished stage (DVC reruns the stage after it)")


def git_running_in(root: Path) -> bool:
    """Whether a git process has its working directory in `root` (True when it cannot be told)."""
    root = Path(root).resolve()
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            if (pid / "comm").read_text().strip().startswith("git") and \
                    Path(os.readlink(pid / "cwd")).is_relative_to(root):
                return True
        except OSError:  # gone, or not ours to read
            continue
    return False


def clear_git_index_lock(root: Path, started: float | None) -> str:
    """Remove git's index.lock if the killed run (started at `started`, epoch seconds) left it."""
    lock = Path(root) / GIT_INDEX_LOCK
    if started is None or not lock.is_file() or lock.stat().st_mtime < started or git_running_in(root):
        return ""  # not the killed run's, or a git is at work: git's own message will say what to do
    lock.unlink(missing_ok=True)
    return f"removed {lock} left by the killed run's git command (no git process is running here)"


def started_at(holder: str) -> float | None:
    """The start time in a run lock's holder text ("PID …, since <ISO time>")."""
    found = re.search(r"since (\S+)\s*$", holder)
    try:
        return dt.datetime.fromisoformat(found.group(1)).timestamp() if found else None
    except ValueError:
        return None


def after_kill(root: Path, holder: str) -> str:
    """Repair what the run described by `holder` (its stale run-lock text) left half-done."""
    return "; ".join(filter(None, [repair_dvc_lock(root), clear_git_index_lock(root, started_at(holder))]))
