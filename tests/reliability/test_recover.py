"""What a killed run leaves half-done is repaired when the next run clears its stale run
lock (flows/recover.py), and nothing else is touched.

- A run killed while DVC rewrites dvc.lock in place leaves it truncated: the last good
  copy is put back when, and only when, dvc.lock no longer loads. The lock text is the
  project's own committed dvc.lock, cut at many points; the end-to-end case (a killed flow
  resumed to the same md5s) is in test_kill_resume.
- A run killed during a git command leaves .git/index.lock: it is removed only if it is
  newer than the killed run's start and no git process runs in the workspace."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest

from flows.recover import GIT_INDEX_LOCK, GOOD, LOCK, keep_good, loads
from flows.runlock import LOCK as RUN_LOCK
from flows.runlock import run_lock

ROOT = Path(__file__).resolve().parents[2]
FULL = (ROOT / "dvc.lock").read_text()
STALE = "PID 99999 on host, flow run killed-run, since 2026-11-22T02:00:00+00:00"


def workspace(tmp_path: Path, lock_text: str, stale: bool = True) -> Path:
    (tmp_path / RUN_LOCK).parent.mkdir(parents=True)
    (tmp_path / LOCK).write_text(FULL)
    keep_good(tmp_path)
    (tmp_path / LOCK).write_text(lock_text)
    if stale:
        (tmp_path / RUN_LOCK).write_text(STALE)
    return tmp_path


def test_a_cut_dvc_lock_is_put_back_and_a_readable_one_is_kept(tmp_path):
    assert loads(FULL) and len(FULL) > 10_000
    restored = kept = 0
    # every 997th character, wherever that falls, and the middle of every 40th key
    # (a mapping key without its colon never loads), so that both kinds of cut occur
    # whatever the committed dvc.lock holds
    key_cuts, pos, keys = [], 0, 0
    for line in FULL.splitlines(keepends=True):
        text = line.strip()
        if ":" in text and not text.startswith("-"):
            keys += 1
            if keys % 40 == 20:
                key_cuts.append(pos + len(line) - len(line.lstrip()) + len(text.split(":")[0]) // 2)
        pos += len(line)
    for i, cut in enumerate(sorted(set(range(50, len(FULL), 997)) | set(key_cuts))):
        ws = workspace(tmp_path / str(i), FULL[:cut])
        with run_lock(ws) as note:
            after = (ws / LOCK).read_text()
        assert "cleared a stale run lock" in note
        if loads(FULL[:cut]):  # cut at a point that still loads: DVC reruns the lost entries
            assert after == FULL[:cut] and "dvc.lock" not in note
            kept += 1
        else:
            assert after == FULL, f"cut at {cut} not repaired"
            assert "dvc.lock was left half-written by the killed run" in note
            restored += 1
    assert len(key_cuts) >= 5 and restored >= len(key_cuts) and kept > 0, (len(key_cuts), restored, kept)
    assert not list(tmp_path.glob("*/.dvc.lock.*.tmp"))  # the restore wrote through a temp file


def test_nothing_is_touched_without_a_killed_run(tmp_path):
    cut = next(FULL[:i] for i in range(len(FULL) // 2, len(FULL)) if not loads(FULL[:i]))
    ws = workspace(tmp_path, cut, stale=False)
    with run_lock(ws) as note:
        assert note == ""
    assert (ws / LOCK).read_text() == cut  # DVC will name the broken file itself


def test_a_broken_good_copy_is_reported_not_restored(tmp_path):
    ws = workspace(tmp_path, "schema: '2.0'\nstages:\n  x:\n    cmd")
    (ws / GOOD).write_text("stages: [")
    with run_lock(ws) as note:
        pass
    assert "its last good copy" in note and "is too" in note
    assert (ws / LOCK).read_text().endswith("    cmd")


def holder(started: float) -> str:
    since = dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds")
    return f"PID 99999 on host, flow run killed-run, since {since}"


def git_workspace(tmp_path: Path, started: float, lock_age: float = 0.0) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / RUN_LOCK).parent.mkdir(parents=True)
    (tmp_path / RUN_LOCK).write_text(holder(started))
    (tmp_path / "a.txt").write_text("a")
    lock = tmp_path / GIT_INDEX_LOCK
    lock.write_bytes(b"")
    os.utime(lock, (time.time() - lock_age,) * 2)
    return tmp_path


def git_add(ws: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "add", "a.txt"], cwd=ws, capture_output=True, text=True)


def test_the_killed_runs_git_index_lock_is_removed(tmp_path):
    ws = git_workspace(tmp_path, started=time.time() - 60)
    assert "index.lock" in git_add(ws).stderr  # what every later publish would meet
    with run_lock(ws) as note:
        assert "removed" in note and "index.lock" in note
        assert git_add(ws).returncode == 0


def test_an_index_lock_older_than_the_killed_run_or_held_by_a_running_git_is_kept(tmp_path):
    old = git_workspace(tmp_path / "old", started=time.time() - 60, lock_age=3600)
    with run_lock(old) as note:
        assert "index.lock" not in note
    assert (old / GIT_INDEX_LOCK).exists()

    busy = git_workspace(tmp_path / "busy", started=time.time() - 60)
    git = subprocess.Popen(["git", "cat-file", "--batch"], cwd=busy / ".git", stdin=subprocess.PIPE,
                           stdout=subprocess.DEVNULL)
    comm = Path(f"/proc/{git.pid}/comm")
    deadline = time.time() + 30
    while comm.read_text().strip() != "git" and time.time() < deadline:  # forked, not yet exec'd under load
        time.sleep(0.01)
    try:
        with run_lock(busy) as note:
            assert "index.lock" not in note
        assert (busy / GIT_INDEX_LOCK).exists()
    finally:
        git.communicate(b"")
    (busy / RUN_LOCK).write_text(holder(time.time() - 60))  # killed again, with no git running now
    with run_lock(busy) as note:
        assert "removed" in note
    assert not (busy / GIT_INDEX_LOCK).exists()


def test_publish_reports_a_git_add_it_could_not_do(small_project):
    """Before, a failed `git add` left nothing staged and publish said "nothing to publish"."""
    from flows.flywheel import publish
    from flywheel.config import load

    lock = small_project / GIT_INDEX_LOCK
    lock.write_bytes(b"")
    try:
        with pytest.raises(RuntimeError, match=r"git add failed: .*index\.lock"):
            publish.fn(small_project, load(small_project / "params.yaml"), "gen-001")
    finally:
        lock.unlink()
