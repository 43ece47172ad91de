"""A run killed while DVC rewrites dvc.lock in place leaves it truncated. Clearing the
killed run's stale run lock puts back the last good copy when, and only when, dvc.lock
no longer loads. The lock text is the project's own committed dvc.lock, cut at many
points; the end-to-end case (a killed flow resumed to the same md5s) is in
test_kill_resume."""

from __future__ import annotations

from pathlib import Path

from flows.dvclock import GOOD, LOCK, keep_good, loads
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
    for i, cut in enumerate(range(50, len(FULL), 997)):
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
    assert restored > 5 and kept > 0, (restored, kept)
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
