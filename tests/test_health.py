"""Loop-health measures on data with known properties."""

from __future__ import annotations

import pandas as pd

from flywheel.config import HealthConfig
from flows.health import alarms, allocation, distinct_bigrams, distinct_labels, worst_case


def test_diversity_falls_when_rows_repeat_themselves():
    varied = pd.Series([f"weather in city{i} on day{i}" for i in range(50)])
    repeated = pd.Series(["weather in paris on monday"] * 50)
    assert distinct_bigrams(varied) > 0.5 > distinct_bigrams(repeated) == 4 / 200
    # a bigger set of the same kind of rows is not less diverse
    more = pd.Series([f"weather in city{i} on day{i}" for i in range(5000)])
    assert abs(distinct_bigrams(more) - distinct_bigrams(pd.Series(list(more)[:300]))) < 0.05
    assert distinct_labels(pd.Series(["a", "a", "b", "c"])) == 0.75


def test_allocation_distance_is_zero_when_new_rows_follow_the_failures():
    probe = pd.DataFrame({"skills": [["a"]] * 6 + [["b"]] * 2 + [["c"]] * 4,
                          "correct": [False] * 6 + [False] * 2 + [True] * 4})
    aimed = pd.Series([["a"]] * 75 + [["b"]] * 25)
    uniform = pd.Series([["a"]] * 33 + [["b"]] * 33 + [["c"]] * 34)
    assert allocation(aimed, probe)["allocation.distance"] == 0.0
    off = allocation(uniform, probe)
    assert off["allocation.distance"] > 0.3 and off["allocation.c.failure_share"] == 0.0
    assert off["allocation.a.new_share"] == 0.33


def test_worst_case_shows_a_regression_the_average_hides():
    history = [{"accuracy": 0.4, "per_skill": {"a": 0.3, "b": 0.5}},
               {"accuracy": 0.6, "per_skill": {"a": 0.6, "b": 0.6}},
               {"accuracy": 0.65, "per_skill": {"a": 0.9, "b": 0.4}}]  # the average rises; b falls
    worst = worst_case(history, learned_at=0.5)
    assert worst["b"] == {"learned": True, "best": 0.6, "worst": 0.4, "current": 0.4}
    assert worst["a"]["worst"] == 0.6 and worst["a"]["best"] == 0.9  # learned at 0.6, never below since


def test_alarms_fire_on_lost_diversity_and_on_regressions_only():
    hc = HealthConfig(diversity_drop=0.2, regression=0.1)
    worst = worst_case([{"per_skill": {"a": 0.8, "b": 0.6}}, {"per_skill": {"a": 0.65, "b": 0.55}}], 0.5)
    found = alarms(0.5, 0.35, worst, hc)
    assert found == ["diversity: distinct bigrams of new rows fell from 0.500 to 0.350",
                     "regression: skill a at 0.650, down from its best 0.800"]
    assert alarms(0.5, 0.45, worst_case([{"per_skill": {"a": 0.8}}, {"per_skill": {"a": 0.75}}], 0.5), hc) == []
