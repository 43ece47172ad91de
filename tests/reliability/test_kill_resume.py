"""A run killed with SIGKILL (the whole process group: flow, Prefect's server, DVC and the
stage) during `judge`, during `train` and between stages resumes, asks the judge server
only what was not yet cached, and ends with the same dvc.lock md5s as a run that was
never killed, even when the kill cut DVC's write of dvc.lock. On the way: a second run
started while one is going is refused by the run lock, and the lock a killed run leaves
behind is found stale and cleared.

One workspace goes through all of it (each kill needs the real flow start-up, ~15 s);
the reference is conftest's `unkilled_run`: the same configuration run by `flywheel run`
from start to end (MLflow was unreachable there, which changes no data)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import env, judged_params, label_ok, make_project, run
from flows.recover import loads
from flows.lineage import lock_md5s
from bench.llm_server import FakeLLM


@pytest.fixture(scope="module", autouse=True)
def _prefect(shared_prefect):
    yield


FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


class HeldJudge:
    """Answers `label_ok`, but from the `hold_after`-th request on, holds every answer until
    `release()`: the judge stage is then stopped half-way however slow the machine is."""

    def __init__(self, hold_after: int):
        self.hold_after, self.answered = hold_after, 0
        self.lock, self.released = threading.Lock(), threading.Event()

    def __call__(self, messages: list, body: dict) -> str:
        with self.lock:
            self.answered += 1
            hold = self.answered > self.hold_after
        if hold:
            self.released.wait()
        return label_ok(messages, body)

    def release(self) -> None:
        self.released.set()


def start(project: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([FLYWHEEL, "run"], cwd=project, env=env(), stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(what: str, cond, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def cached(project: Path) -> int:
    db = project / ".llm-cache" / "responses.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # the stage has made the file and not yet its table: nothing cached
        return 0


def locked_stages(project: Path) -> set[str]:
    lock = project / "dvc.lock"
    try:  # DVC rewrites the file in place: it may be caught half-written
        data = yaml.safe_load(lock.read_text()) if lock.exists() else None
    except yaml.YAMLError:
        data = None
    return set((data or {}).get("stages", {}))


def test_killed_runs_resume_to_the_same_outputs_without_asking_twice(unkilled_run, tmp_path):
    ref_md5s, needed = unkilled_run.md5s, unkilled_run.requests
    assert needed > 20  # the judge really asks the server
    judge = HeldJudge(hold_after=needed // 3)
    with FakeLLM(judge, latency=0.05) as server:
        project = make_project(tmp_path / "ws", judged_params(server.url))
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "init"], project)

        # 1. Killed during judge, once a third of the answers are cached (the server holds
        #    the rest). Meanwhile a second run is refused by the lock.
        first = start(project, tmp_path / "run1.log")
        wait_for("judge calls", lambda: cached(project) >= needed // 3 - 2, first)
        second = run([FLYWHEEL, "run"], project, check=False)
        assert second.returncode == 2 and "another flywheel run is in progress" in second.stderr, second.stderr
        assert f"PID {first.pid}" in second.stderr
        kill(first)
        judge.release()
        assert "judge@gen-000" not in locked_stages(project)
        at_kill = cached(project)
        asked_before = server.requests
        assert 0 < at_kill < needed

        # 2. Resumed, then killed during train.
        resumed = start(project, tmp_path / "run2.log")
        wait_for("train", lambda: "[train] steps:" in (tmp_path / "run2.log").read_text(), resumed)
        kill(resumed)
        assert "train@gen-000" not in locked_stages(project) and "judge@gen-000" in locked_stages(project)
        # Only what was not cached was asked (in-flight answers lost to the kill are the
        # only repeats, at most one per connection).
        assert server.requests - asked_before == needed - at_kill
        repeats = sum(n - 1 for n in server.asked.values())
        assert repeats <= 2, repeats
        log2 = (tmp_path / "run2.log").read_text()
        assert "cleared a stale run lock" in log2

        # 3. Resumed, then killed between stages: right after train is locked. The kill is
        #    made to have hit DVC's in-place write of dvc.lock: the file is cut mid-entry.
        third = start(project, tmp_path / "run3.log")
        wait_for("train to finish", lambda: "train@gen-000" in locked_stages(project), third, timeout=400)
        kill(third)
        text = (project / "dvc.lock").read_text()
        cut = next(i for i in range(text.index("train@gen-000:") + 40, len(text)) if not loads(text[:i]))
        (project / "dvc.lock").write_text(text[:cut])

        # 4. Resumed to the end.
        last = run([FLYWHEEL, "run"], project, check=False)
        assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
        assert "cleared a stale run lock" in last.stderr
        assert "dvc.lock was left half-written by the killed run; put back the copy" in last.stderr
        assert server.requests - asked_before == needed - at_kill  # nothing more was asked
        assert lock_md5s(project) == ref_md5s
        assert not (project / ".flywheel" / "run.lock").read_text()  # a clean end leaves no holder
