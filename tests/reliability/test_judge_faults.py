"""The judge's server misbehaves: a share of requests fail (500, 429, a hang past the
timeout, a body that is not JSON, an answer that is not a verdict), or the server goes
away for a while, or for good. The stage completes, or stops with one clear line; every
row has a verdict or an explicit error status, and no row the judge could not decide
keeps a label."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import SMALL, env, make_project, merge, run
from flywheel import layout, store, tables
from flywheel.toolcall.embedded_judge import JUDGE_ERROR, VERDICTS
from bench.llm_server import FakeLLM

KINDS = ("500", "429:0", "hang:2", "badbody", "garbage")


def verdict_of(messages: list, body: dict) -> str:
    return json.dumps({"verdict": "label_ok", "analysis": "fine"})


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    with FakeLLM(verdict_of, fault_rate=0.3, fault_kinds=KINDS, seed=7) as server:
        judge = {"backend": "openai", "base_url": server.url, "model": "judge-a", "concurrency": 4,
                 "timeout_s": 1.0, "max_retries": 2, "backoff_s": 0.01}
        project = make_project(tmp_path_factory.mktemp("faults"),
                               merge(SMALL, {"generations": {"gen-000": {"prev": "seed"}},
                                             "judge": {"committee": [judge]}}))
        run([sys.executable, "-m", "dvc", "repro", "judge@gen-000"], project)
        yield project, server


def _verdicts(project):
    return store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)


def _set_judge(project, **values):
    cfg = yaml.safe_load((project / "params.yaml").read_text())
    cfg["judge"]["committee"][0].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_every_row_has_a_verdict_or_an_error_and_nothing_is_guessed(faulty):
    project, server = faulty
    rows = _verdicts(project)
    report = json.loads((project / layout.llm_report("gen-000", "judge")).read_text())
    assert report["retries"] > 0 and report["errors"] > 0  # the faults happened
    assert rows["verdict"].isin(VERDICTS).all()
    failed = rows[rows["verdict"] == JUDGE_ERROR]
    assert len(failed) == report["errors"] > 0
    assert failed["final_label"].isna().all()  # held out, never the teacher's label by default
    assert (failed["reason"] != "").all()
    asked = rows[rows["agreement"].notna() | (rows["verdict"] == JUDGE_ERROR)]
    assert len(asked) > len(failed)  # most asked rows still got their verdict


def test_an_outage_the_retries_outlast_is_survived(faulty):
    """The server goes away in the middle of the stage (open connections dropped, new ones
    refused) for 3 s and comes back; the retries carry the stage through."""
    project, server = faulty
    server.fault_rate, server.latency = 0.0, 0.02
    _set_judge(project, model="judge-b", max_retries=6, backoff_s=0.5)  # new cache keys: everything is asked
    start = server.requests
    proc = subprocess.Popen([sys.executable, "-m", "tasks", "judge", "gen-000"], cwd=project, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while server.requests < start + 20:
        assert proc.poll() is None and time.monotonic() < deadline, "the stage did not start asking"
        time.sleep(0.02)
    server.down()
    time.sleep(3)
    server.up()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((project / layout.llm_report("gen-000", "judge")).read_text())
    assert report["retries"] > 0 and report["errors"] == 0
    assert (_verdicts(project)["verdict"] != JUDGE_ERROR).all()


def test_a_server_that_stays_away_stops_the_stage_with_one_line_and_keeps_its_outputs(faulty, tmp_path):
    project, server = faulty
    path = project / layout.path("gen-000", layout.VERDICTS)
    before = path.read_bytes()
    shutil.copy(project / "params.yaml", tmp_path / "params.yaml")
    _set_judge(project, model="judge-c", max_retries=1, backoff_s=0.1)
    server.down()
    try:
        proc = run([sys.executable, "-m", "tasks", "judge", "gen-000"], project, check=False)
    finally:
        server.up()
        shutil.copy(tmp_path / "params.yaml", project / "params.yaml")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "cannot reach" in lines[0] and "after 2 attempts" in lines[0]
    assert path.read_bytes() == before
