"""The loop experiment (experiments/loop.py) on a toy size: every arm runs the real stages and
is measured, the no-judge arm keeps the teacher's labels as they come, an interrupted or
extended run keeps what it has, and the report is written. Its accuracies mean nothing at
this size and are not asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, env, run

TINY = ["--tiny", "--seeds", "2", "--generations", "2", "--parallel", "2"]


def test_the_arms_run_at_equal_budget_and_a_second_run_adds_only_what_is_missing(tmp_path):
    tiny = [*TINY, "--work", str(tmp_path / "work")]
    run([sys.executable, "-m", "experiments.loop", *tiny, "--arms", "full,no_judge,static", "--out", str(tmp_path)], ROOT)
    assert not (tmp_path / "work").exists()  # every run measured: its workspaces are gone
    data = json.loads((tmp_path / "loop.json").read_text())
    assert sorted(data["runs"]) == sorted(f"{a}/{s}" for a in ("full", "no_judge", "static")
                                          for s in (20261121, 20261122))
    for r in data["runs"].values():
        assert [g["generation"] for g in r["curve"]] == ["gen-000", "gen-001"]
        per_gen = [b - a for a, b in zip([0] + [g["generated_rows"] for g in r["curve"]],
                                         [g["generated_rows"] for g in r["curve"]])]
        assert all(54 <= n <= 60 for n in per_gen), per_gen  # the same 60 plan rows; the gate refuses a few
        assert all(0 <= g["user"] <= 1 and 0 <= g["eval"] <= 1 for g in r["curve"])
    for s in (20261121, 20261122):
        off, on = data["runs"][f"no_judge/{s}"]["curve"], data["runs"][f"full/{s}"]["curve"]
        for g in off:  # kept as they came: the kept labels are exactly as good as the teacher's
            assert g["kept_label_accuracy"] == pytest.approx(g["teacher_label_accuracy"]) and g["kept_rows"] > 0
        assert all(g["kept_label_accuracy"] > g["teacher_label_accuracy"] for g in on)  # the judge cleans
        static = data["runs"][f"static/{s}"]["curve"]  # shares full's generation 0 (one prefix per seed)
        assert [static[0][k] for k in ("user", "eval", "kept_label_accuracy")] == \
            [on[0][k] for k in ("user", "eval", "kept_label_accuracy")]
    before = {k: v for k, v in data["runs"].items()}
    run([sys.executable, "-m", "experiments.loop", *tiny, "--arms", "full,random", "--out", str(tmp_path)], ROOT)
    after = json.loads((tmp_path / "loop.json").read_text())["runs"]
    assert {k: after[k] for k in before} == before  # kept, not rerun
    assert {"random/20261121", "random/20261122"} <= set(after)
    md = (tmp_path / "loop.md").read_text()
    for arm in ("full", "no_judge", "static", "random"):
        assert f"| `{arm}` |" in md
    assert (tmp_path / "loop.png").stat().st_size > 10_000


def test_an_unknown_arm_is_refused(tmp_path):
    proc = run([sys.executable, "-m", "experiments.loop", "--arms", "full,psychic", "--out", str(tmp_path)], ROOT,
               check=False)
    assert proc.returncode != 0 and "unknown arm 'psychic'" in proc.stderr


def _result(stdout: str) -> dict:
    """A job's RESULT lines, without the seconds (they differ between runs)."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            for arm, curve in json.loads(line[len("RESULT "):]).items():
                out[arm] = [{k: v for k, v in g.items() if k != "seconds"} for g in curve]
    return out


def test_a_job_killed_between_stages_goes_on_from_the_first_stage_it_had_not_finished(tmp_path):
    job = [sys.executable, "-m", "experiments.loop", "--tiny", "--generations", "2", "--job", "20261121:full",
           "--out", str(tmp_path)]
    whole = run([*job, "--work", str(tmp_path / "whole")], ROOT)  # never killed
    work = tmp_path / "killed"
    proc = subprocess.Popen([*job, "--work", str(work)], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, progress = time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(work.glob("full-*/loop-progress.json"))
        if found and len(json.loads(found[0].read_text())["stages"]) >= 9:  # into gen-001: killed there
            progress = found[0]
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert progress is not None, "the job ended before it could be killed"
    finished = json.loads(progress.read_text())["stages"]
    assert 9 <= len(finished) < 14  # killed with stages left to do
    stamps = {f: f.stat().st_mtime_ns for f in (progress.parent / "data" / "gen-000").rglob("*") if f.is_file()}
    resumed = run([*job, "--work", str(work)], ROOT)
    after = json.loads(progress.read_text())["stages"]
    assert after[:len(finished)] == finished and len(after) == len(set(after)) == 14  # each stage once
    ran = [line.split()[0].strip("[]") + "@" + line.split()[1] for line in resumed.stdout.splitlines()
           if line.startswith("[") and line.endswith(" done")]
    assert ran == after[len(finished):]  # the rerun ran exactly the stages the kill had left
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # generation 0 was not made again
    assert _result(resumed.stdout) == _result(whole.stdout) != {}  # and the result is the unkilled run's


def test_a_second_run_on_the_same_workspaces_is_refused(tmp_path):
    import fcntl

    (tmp_path / "work").mkdir()
    with open(tmp_path / "work" / ".lock", "w") as held:  # as a run in progress holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run([sys.executable, "-m", "experiments.loop", *TINY, "--arms", "full", "--out", str(tmp_path),
                    "--work", str(tmp_path / "work")], ROOT, check=False)
    assert proc.returncode != 0 and "another run is using" in proc.stderr
    assert not (tmp_path / "loop.json").exists()
