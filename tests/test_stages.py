"""Pure parts of the stages: composing under each policy, decontamination, planning."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from flywheel import store
from flywheel.config import ComposeConfig, ExpandConfig
from flywheel.toolcall import calls as C
from tasks.compose import check_decontaminated, compose, verified
from tasks.expand import plan


def rows(n, source, start=0):
    return pd.DataFrame({
        "id": [f"{source}{i}" for i in range(start, start + n)], "generation": "g", "source": source,
        "parent_id": None, "skills": [["weather"]] * n, "teacher": "t",
        "request": [f"weather in city{i}" for i in range(start, start + n)], "label": "[]", "judge": "j"})


def test_accumulate_keeps_everything_and_dedups_by_request():
    seed, prev = rows(5, "seed"), rows(5, "seed")
    new = pd.concat([rows(3, "synthetic", 3), rows(4, "synthetic", 10)])  # city3, city4 repeat seed requests
    out = compose(prev, seed, new, ComposeConfig(policy="accumulate"), seed_value=1)
    assert len(out) == 5 + 1 + 4
    assert out["request"].is_unique
    assert (out.loc[out["request"] == "weather in city3", "source"] == "seed").all()  # the older row wins


def test_replace_keeps_only_seed_and_new():
    seed, prev, new = rows(5, "seed"), rows(50, "synthetic", 100), rows(7, "synthetic", 200)
    out = compose(prev, seed, new, ComposeConfig(policy="replace"), seed_value=1)
    assert len(out) == 12 and set(out["source"]) == {"seed", "synthetic"}


def test_subsample_has_a_fixed_budget_and_a_seed_floor():
    seed, new = rows(40, "seed"), rows(400, "synthetic", 100)
    cfg = ComposeConfig(policy="accumulate-subsample", budget=100, min_seed_share=0.3)
    out = compose(seed, seed, new, cfg, seed_value=1)
    assert len(out) == 100 and (out["source"] == "seed").sum() >= 30


def test_overlap_with_the_evaluation_set_is_an_error():
    evals = pd.DataFrame({"id": ["e"], "request": ["Weather in  CITY2"]})
    with pytest.raises(store.DataError, match="1 training request\\(s\\) equal evaluation requests"):
        check_decontaminated(rows(5, "seed"), evals, "data/gen-000/train.parquet")
    check_decontaminated(rows(2, "seed"), evals, "x")  # no overlap: no error


def test_verified_uses_final_labels_and_marks_corrections():
    v = rows(3, "synthetic").drop(columns=["judge"])
    v["student_output"], v["reason"], v["judge"] = "", "", "embedded"
    v["verdict"] = ["label_ok", "label_wrong", "both_wrong"]
    fixed = C.dumps([{"name": "get_weather", "arguments": {"city": "city1"}}])
    v["final_label"] = ["[]", fixed, None]
    out = verified(v)
    assert list(out["source"]) == ["synthetic", "corrected"] and out["label"].iloc[1] == fixed
    assert out["id"].iloc[1] == store.row_id("weather in city1", fixed)


def test_plan_goes_to_failures_with_their_ids_then_explores():
    train = rows(20, "synthetic")
    train["label"] = C.dumps([{"name": "get_weather", "arguments": {"city": "x"}}])
    probe = pd.DataFrame({"id": train["id"], "skills": [["weather", "relative_dates"]] * 20,
                          "output": "", "correct": [i >= 4 for i in range(20)], "loss": range(20)})
    out = plan(probe, train, ExpandConfig(budget=30, variations_per_failure=3, explore_share=0.5),
               random.Random(0), "gen-000")
    assert len(out) == 30 and out["plan_id"].is_unique
    targeted = out[out["kind"] == "failure_variation"]
    assert len(targeted) == 12 and set(targeted["parent_id"]) == {"synthetic0", "synthetic1", "synthetic2", "synthetic3"}
    assert targeted["parent_id"].iloc[0] == "synthetic3"  # highest loss first
    assert all(list(f) == ["get_weather"] for f in targeted["functions"])
    assert out.loc[out["kind"] == "explore", "parent_id"].isna().all()
