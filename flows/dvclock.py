"""`dvc.lock` survives a run killed while DVC writes it.

DVC rewrites `dvc.lock` in place (it opens the file with "w+", then dumps the YAML), so a
run killed during that write leaves a truncated file, and every later `dvc` command fails
on it. After each stage DVC finishes, the flow keeps a copy of the lock file
(`.flywheel/dvc.lock.good`, written atomically: `keep_good`). When the next run finds the
killed run's stale run lock, `repair` checks `dvc.lock` with DVC's own lock-file schema
and, if it does not load, puts that copy back. The stage whose entry was lost is then
rerun by DVC (or restored from its run cache); stage outputs are deterministic, so the run
ends with the same md5s as one never killed.

A truncated file that still loads (cut at a line end) is left alone: it only lacks the
last entries, and DVC reruns those stages. A readable `dvc.lock` is never replaced, so a
lock file a user checked out by hand is kept.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flywheel import store

LOCK = Path("dvc.lock")
GOOD = Path(".flywheel") / "dvc.lock.good"


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


def repair(root: Path) -> str:
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
