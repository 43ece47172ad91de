"""The default domain: catalog, requests, scoring, the verifier and the judge's verdicts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flywheel.student.codec import Codec
from flywheel.vocab import train_copy_tokenizer
from flywheel.toolcall import calls
from flywheel.toolcall import embedded_judge, label_noise
from flywheel.toolcall import phrasings
from flywheel.toolcall.catalog import BOOL, DATE, ENUM, INT, NUMBER, STR, TIME
from flywheel.toolcall.phrasings import CATALOG, FAMILIES, FUNCTIONS, SKILLS
from flywheel.toolcall.verifier import check, dates_in, repair


def draw(n: int, seed: int = 0, **kw) -> list[phrasings.Request]:
    rng = random.Random(seed)
    return [phrasings.make_request(rng, phrasings.spec_for_skill(rng, SKILLS[i % len(SKILLS)]), **kw) for i in range(n)]


def test_catalog_covers_the_required_breadth():
    assert len(FUNCTIONS) >= 12 and len(FAMILIES) >= 4 and len(SKILLS) >= 10
    types = {a.type for f in FUNCTIONS.values() for a in f.args}
    assert {STR, NUMBER, INT, ENUM, DATE, TIME, BOOL} <= types
    assert any(not a.required for f in FUNCTIONS.values() for a in f.args)


def test_every_skill_is_shown_by_some_request():
    shown = Counter(s for r in draw(600) for s in r.skills)
    assert set(SKILLS) <= set(shown), set(SKILLS) - set(shown)


def test_true_labels_pass_the_verifier():
    for sets, values in [(("seed", "gen"), "train"), (("heldout",), "heldout")]:
        for req in draw(1500, seed=1, phrasing_sets=sets, value_split=values):
            assert check(req.text, req.calls, CATALOG) == [], (req.text, req.calls)


def test_labels_survive_the_students_text_round_trip():
    """Through the student's copy codec, with a vocabulary from the generator's training
    values only: a label of held-out cities, names and titles encodes (its unknown words as
    markers pointing into the request) and decodes back to the same calls."""
    from flywheel.toolcall.sets import lexicon

    codec = Codec(train_copy_tokenizer(lexicon(random.Random(9), 3000), 20))
    reqs = draw(800, seed=2, phrasing_sets=("heldout",), value_split="heldout")
    copied = 0
    for req in reqs:
        ids = codec.target(calls.render(req.calls), req.text)[:-1]
        copied += any(i in codec.markers for i in ids)
        assert codec.unk not in ids, (req.text, calls.render(req.calls))
        assert calls.accepts(calls.parse(codec.text(ids, req.text).split(), CATALOG), req.calls, CATALOG), (req.text, calls.render(req.calls))
    assert copied > len(reqs) // 3  # most held-out values are copied, not known


def test_surface_notations_round_trip():
    """Every notation the generator writes is read back by the verifier's parser."""
    from flywheel.toolcall import surface

    rng = random.Random(4)
    for value in ("today", "tomorrow", "+2d", "+7d", "next_friday", "12-05", "02-28"):
        for _ in range(40):
            assert value in surface.dates_in(surface.normalise(surface.render_date(rng, value)))
    for value in ("15:00", "09:30", "12:00", "07:15"):
        for _ in range(40):
            assert value in surface.times_in(surface.normalise(surface.render_time(rng, value)))
    for value in (3, 12, 25, 100, 1200, 98765, 2_000_000, 12.5, 0.75):
        for _ in range(40):
            assert float(value) in surface.numbers_in(surface.normalise(surface.render_number(rng, value)))
    assert surface.numbers_in(surface.normalise("1,200 yen, twenty five bucks, a hundred, 200g")) == [1200.0, 200.0, 25.0, 100.0]
    assert surface.dates_in(surface.normalise("December 5th, the 14th of July, 12/5 or Friday")) == [
        "12-05", "07-14", "12-05", "next_friday"]


def test_the_phrasing_space_is_large_and_held_out_parts_are_apart():
    sizes = phrasings.space_size()
    assert min(sizes.values()) > 1e6
    for pool in ("city", "name", "title", "text"):
        train, held = set(phrasings.values(pool, "train")), set(phrasings.values(pool, "heldout"))
        assert len(train) > 1000 and held and not train & held
    for fn, sets in phrasings.TEMPLATES.items():
        assert not set(sets["heldout"]) & set(sets["seed"] + sets["gen"]), fn


def test_the_user_split_reads_and_tags_its_rows(tmp_path):
    from flywheel.store import DataError
    from flywheel.toolcall.sets import user_set

    from conftest import ROOT

    user = user_set(ROOT / "domains" / "toolcall" / "user.jsonl", CATALOG)
    assert len(user) >= 300 and user["request"].is_unique and (user["split"] == "user").all()
    skills = {s for row in user["skills"] for s in row}
    assert set(SKILLS) <= skills
    assert (user["skills"].map(lambda s: "no_call" in s) == (user["label"] == "[]")).all()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "weather in oslo", "output": [{"name": "get_weather", "arguments": {"town": "oslo"}}]}\n')
    with pytest.raises(DataError, match="bad.jsonl: line 1: not a valid call of the catalog "
                                        r"\(schema: get_weather has no argument 'town'\)"):
        user_set(bad, CATALOG)


def test_the_scorer_is_order_free_and_compares_as_bfcl_does():
    a = [{"name": "get_weather", "arguments": {"city": "New  York", "unit": "celsius"}},
         {"name": "convert_length", "arguments": {"value": 12, "from_unit": "km", "to_unit": "mile"}}]
    b = [{"name": "convert_length", "arguments": {"to_unit": "mile", "value": 12.0, "from_unit": "km"}},
         {"name": "get_weather", "arguments": {"unit": "celsius", "city": "new york"}}]
    assert calls.accepts(a, b, CATALOG)
    assert not calls.accepts(a[:1], b, CATALOG)
    assert not calls.accepts([{"name": "get_weather", "arguments": {"city": "paris"}}], a[:1], CATALOG)
    assert not calls.accepts(None, [], CATALOG)
    assert calls.accepts([], [], CATALOG)
    # BFCL's string rule: no case, spaces or ,./-_*^ ("Berkeley, CA" is "berkeley ca")
    weather = [{"name": "get_weather", "arguments": {"city": "Berkeley, CA"}}]
    assert calls.accepts([{"name": "get_weather", "arguments": {"city": "berkeley ca"}}], weather, CATALOG)
    assert not calls.accepts([{"name": "get_weather", "arguments": {"city": "berkeley"}}], weather, CATALOG)
    # an alternative, and an optional argument left out where "" allows it
    either = [{"name": "get_weather", "arguments": {"city": "Paris"},
               "accept": {"city": ["Paris", "Paris, France"], "unit": ["", "celsius"]}}]
    for city in ("paris france", "Paris"):
        assert calls.accepts([{"name": "get_weather", "arguments": {"city": city}}], either, CATALOG)
    assert calls.accepts([{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}], either, CATALOG)
    assert not calls.accepts([{"name": "get_weather", "arguments": {"city": "Paris", "unit": "fahrenheit"}}],
                             either, CATALOG)


def test_parse_rejects_malformed_output():
    assert calls.parse(["get_weather", "(", "city", "paris", ")"], CATALOG) is None
    assert calls.parse(["get_weather", "city"], CATALOG) is None
    assert calls.parse(["none"], CATALOG) == []


def test_dates_are_read_from_the_words():
    assert dates_in("remind me the day after tomorrow") == ["+2d"]
    assert dates_in("in three days and next friday") == ["+3d", "next_friday"]
    assert dates_in("on december 5 or on 03/07") == ["12-05", "03-07"]


@pytest.mark.parametrize("label, reason", [
    ([{"name": "get_weather", "arguments": {"city": "rome"}}], "grounding"),
    ([{"name": "get_weather", "arguments": {"city": "paris", "unit": "kelvin"}}], "type"),
    ([{"name": "get_weather", "arguments": {}}], "schema"),
    ([{"name": "get_weather", "arguments": {"city": "paris", "date": "+3d"}}], "grounding"),
    ([{"name": "teleport", "arguments": {}}], "schema"),
])
def test_verifier_names_what_is_wrong(label, reason):
    problems = check("what is the weather in paris tomorrow in celsius", label, CATALOG)
    assert problems and problems[0].startswith(reason)


def test_repair_fixes_a_value_with_one_candidate_only():
    req = "convert 12.5 km to miles"
    bad = [{"name": "convert_length", "arguments": {"value": "12.5 units", "from_unit": "km", "to_unit": "mile"}}]
    assert repair(req, bad, CATALOG) == [{"name": "convert_length",
                                 "arguments": {"value": 12.5, "from_unit": "km", "to_unit": "mile"}}]
    assert repair("weather in paris", [{"name": "get_weather", "arguments": {"city": "rome"}}], CATALOG) is None


def noisy_rows(n: int, rate: float, seed: int = 3):
    rng = random.Random(seed)
    rows = []
    for req in draw(n, seed=seed):
        cand, true, kind = label_noise.label(rng, req, {}, rate)
        rows.append((req, cand, true, kind))
    return rows


def test_judge_finds_seeded_label_noise_without_a_student():
    rows = noisy_rows(3000, 0.3)
    wrong = [r for r in rows if r[1] != r[2]]
    assert 0.25 < len(wrong) / len(rows) < 0.35
    verdicts = [embedded_judge.verdict(req.text, cand, None, catalog=CATALOG) for req, cand, _, _ in rows]
    flagged = [v.verdict in (embedded_judge.LABEL_WRONG, embedded_judge.BOTH_WRONG) for v in verdicts]
    is_wrong = [cand != true for _, cand, true, _ in rows]
    tp = sum(f and w for f, w in zip(flagged, is_wrong))
    assert tp / sum(flagged) == 1.0  # the cascade never flags a correct label
    assert tp / sum(is_wrong) > 0.45  # and catches the errors it can see
    # Corrections it makes are right.
    fixed = [(v.final_label, true) for v, (_, _, true, _) in zip(verdicts, rows) if v.final_label is not None
             and v.verdict != embedded_judge.LABEL_OK]
    assert fixed and all(calls.dumps(f) == calls.dumps(t) for f, t in fixed)


def test_a_disagreeing_student_exposes_errors_the_cascade_cannot_see():
    rows = noisy_rows(3000, 0.3)
    invisible = [(req, cand, true) for req, cand, true, _ in rows if cand != true and not check(req.text, cand, CATALOG)]
    assert invisible, "the teacher should make some errors that pass every check"
    with_student = [embedded_judge.verdict(req.text, cand, true, catalog=CATALOG) for req, cand, true in invisible]
    assert all(v.verdict == embedded_judge.MODEL_WRONG for v in with_student)  # the row is flagged for the student...
    agree = [embedded_judge.verdict(req.text, true, true, catalog=CATALOG) for req, _, true in invisible]
    assert all(v.verdict == embedded_judge.LABEL_OK for v in agree)


def test_judge_quality_reads_the_truth():
    import pandas as pd

    rows = noisy_rows(500, 0.3)
    verdicts = pd.DataFrame({
        "id": [str(i) for i in range(len(rows))],
        "label": [calls.dumps(c) for _, c, _, _ in rows],
        "verdict": [embedded_judge.verdict(r.text, c, None, catalog=CATALOG).verdict for r, c, _, _ in rows],
        "final_label": [None if (v := embedded_judge.verdict(r.text, c, None, catalog=CATALOG)).final_label is None else calls.dumps(v.final_label)
                        for r, c, _, _ in rows],
    })
    truth = pd.DataFrame({"id": verdicts["id"], "true_label": [calls.dumps(t) for _, _, t, _ in rows],
                          "error_kind": [k for *_, k in rows]})
    q = embedded_judge.quality(verdicts, truth)
    assert q["teacher_errors"] == sum(c != t for _, c, t, _ in rows)
    assert q["precision"] == 1.0 and 0 < q["recall"] < 1
    assert q["kept_label_accuracy"] > 1 - q["teacher_error_rate"]
