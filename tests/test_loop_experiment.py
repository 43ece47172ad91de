"""The loop experiment (experiments/loop.py) on a toy size: every arm runs the real stages and
is measured, the no-judge arm keeps the teacher's labels as they come, an interrupted or
extended run keeps what it has, and the report is written. Its accuracies mean nothing at
this size and are not asserted."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, run

TINY = ["--tiny", "--seeds", "2", "--generations", "2", "--parallel", "2"]


def test_the_arms_run_at_equal_budget_and_a_second_run_adds_only_what_is_missing(tmp_path):
    run([sys.executable, "-m", "experiments.loop", *TINY, "--arms", "full,no_judge,static", "--out", str(tmp_path)], ROOT)
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
    run([sys.executable, "-m", "experiments.loop", *TINY, "--arms", "full,random", "--out", str(tmp_path)], ROOT)
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
