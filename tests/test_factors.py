"""Failure analysis by composition factor: what a request is made of, read back from its
text and calls (flywheel/toolcall/factors.py), failure rates per factor with the test
that says which stand out, and the dev-against-user agreement (flywheel/factor_rates.py)."""

from __future__ import annotations

import collections
import random

import pandas as pd
import pytest

from flywheel.factor_rates import agreement, factor_failure_rates, wilson
from flywheel.toolcall import calls
from flywheel.toolcall import phrasings
from flywheel.toolcall.phrasings import CATALOG, SKILLS
from flywheel.toolcall.factors import factors


def label(*made) -> str:
    return calls.dumps([{"name": n, "arguments": a} for n, a in made])


@pytest.mark.parametrize("request_text, made, expected, absent", [
    ("hey, put lunch with the team on the 5th of december at 3pm in my calendar thanks",
     [("create_event", {"title": "lunch with the team", "date": "12-05", "time": "15:00"})],
     {"dress:greeting", "dress:suffix", "date:the_nth_of", "time:12h", "string:function_words", "string:multiword",
      "calls:1", "case:lower", "length:long"}, {"date:month_abbr", "dress:ask"}),
    ("CONVERT TWENTY FIVE EUROS TO YEN",
     [("convert_currency", {"amount": 25, "from_currency": "eur", "to_currency": "jpy"})],
     {"case:upper", "number:words", "enum:synonym", "length:short"}, {"enum:canonical"}),
    ("Weather in Paris on 12/05 and book a hotel there for 3 nights from dec 1st?",
     [("get_weather", {"city": "Paris", "date": "12-05"}), ("book_hotel", {"city": "Paris", "check_in": "12-01", "nights": 3})],
     {"calls:2", "date:numeric", "date:month_ordinal", "date:month_abbr", "int:digits", "dress:question",
      "case:mixed", "string:one_word"}, set()),
])
def test_a_requests_factors_are_read_from_its_words(request_text, made, expected, absent):
    found = set(factors(request_text, label(*made), CATALOG))
    assert expected <= found, expected - found
    assert not absent & found


def test_a_value_written_in_no_known_notation_is_unread_and_a_bad_label_gives_the_texts_factors():
    assert "notation:unread" in factors("book it for the fifth of dec", label(("book_hotel", {
        "city": "Oslo", "check_in": "12-05", "nights": 2})), CATALOG)
    assert factors("what is the weather?", "not json", CATALOG) == ["case:lower", "dress:question", "length:short"]
    # a teacher's label with values of the wrong shape: read as unread, never an error
    for bad in ({"value": "24868.0 units", "from_unit": "km", "to_unit": "mile"},
                {"value": None, "from_unit": 3, "to_unit": ["mile"]}):
        assert "notation:unread" in factors("convert 24868 km to miles", label(("convert_length", bad)), CATALOG)
    assert "notation:unread" in factors("weather in oslo on x", label(("get_weather", {"city": "Oslo", "date": 7})), CATALOG)


def test_every_notation_the_composer_writes_is_read_back():
    rng, seen = random.Random(7), collections.Counter()
    for i in range(1200):
        r = phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)]))
        found = factors(r.text, calls.dumps(r.calls), CATALOG)
        assert "notation:unread" not in found, (r.text, r.calls)
        seen.update(f.split(":")[0] for f in found)
        seen.update(f for f in found if f.startswith("date:"))
    assert {"date", "time", "number", "int", "enum", "string", "dress", "case", "length", "calls"} <= set(seen)
    assert sum(1 for k in seen if k.startswith("date:")) >= 10  # the composer's date notations, each read


def test_wilson_interval():
    low, high = wilson(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)


def test_a_factor_stands_out_only_when_its_interval_is_above_the_overall_rate_with_enough_rows():
    rows = ([(["hard"], False)] * 40 + [(["hard"], True)] * 10      # 0.8 of 50 fail
            + [(["rare"], False)] * 5                               # all fail, but 5 rows
            + [(["easy"], False)] * 30 + [(["easy"], True)] * 170)  # 0.15 of 200
    df = pd.DataFrame(rows, columns=["factors", "correct"])
    profile = factor_failure_rates(df)
    assert profile["hard"] == {"rows": 50, "failed": 40, "failure_rate": 0.8, "interval": profile["hard"]["interval"],
                               "stands_out": True}
    assert not profile["rare"]["stands_out"] and profile["rare"]["failure_rate"] == 1.0
    assert not profile["easy"]["stands_out"]
    assert factor_failure_rates(df, min_rows=5)["rare"]["stands_out"]


def test_agreement_over_the_factors_both_splits_saw_often_enough():
    a = {f: {"rows": 50, "failure_rate": r} for f, r in zip("wxyz", (0.1, 0.2, 0.3, 0.9))}
    b = {f: {"rows": 40, "failure_rate": r} for f, r in zip("wxyz", (0.2, 0.3, 0.4, 1.0))} | {"v": {"rows": 3, "failure_rate": 0}}
    out = agreement(a, b)
    assert out["n"] == 4 and out["pearson"] == pytest.approx(1.0) and out["factors"] == list("wxyz")
    assert agreement(a, {"w": b["w"]})["pearson"] is None
