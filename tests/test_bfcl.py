"""BFCL's own data and checker against the project's catalog loader and scorer
(flywheel/bfcl.py, experiments/bfcl_agreement.py): every single-turn category."""

from __future__ import annotations

import pytest

from flywheel import bfcl
from flywheel.store import DataError
from flywheel.toolcall import calls
from flywheel.toolcall.catalog import from_tools

pytest.importorskip("bfcl_eval")

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}


def _refusable(schema: dict) -> bool:
    """Does a JSON Schema property use a construct the catalog documents as refused?
    Written from the JSON Schema itself, apart from the loader."""
    if any(k in schema for k in ("anyOf", "oneOf", "allOf", "not", "$ref")) or isinstance(schema.get("type"), list):
        return True
    kind = schema.get("type", "string")
    if "enum" in schema:
        if kind in ("array", "object"):
            return True
        want = _TYPES.get(kind)
        return any(isinstance(v, bool) != (kind == "boolean") or not isinstance(v, want) for v in schema["enum"])
    if kind == "array":
        return not isinstance(schema.get("items"), dict) or _refusable(schema["items"])
    return kind == "object" and any(_refusable(p) for p in schema.get("properties", {}).values())


def test_the_loader_refuses_exactly_the_documented_constructs_with_one_line():
    seen = 0
    for category in bfcl.CATEGORIES:
        for q in bfcl.questions(category):
            for tool in q["tools"]:
                fn = tool["function"]
                expect = any(_refusable(p) for p in fn["parameters"].get("properties", {}).values())
                try:
                    from_tools([tool], f"BFCL {q['id']}")
                    refused = None
                except DataError as exc:
                    refused = str(exc)
                assert (refused is not None) == expect, (q["id"], fn["name"], refused)
                if refused:  # one line, naming the question, the function and the argument
                    assert "\n" not in refused and refused.startswith(f"BFCL {q['id']}: {fn['name']}.")
                seen += 1
    assert seen > 6000


def _data_bug(q: dict) -> bool:
    """A possible answer BFCL's own checker cannot accept: a required argument it leaves
    out (no acceptable value, or `""` first), or an argument the function doc lacks."""
    docs = {f["name"].replace(".", "_"): f for f in q["tools"] and [t["function"] for t in q["tools"]]}
    for truth in q["truth"]:
        for name, args in truth.items():
            doc = docs[name.replace(".", "_")]["parameters"]
            if any(not args.get(r) or args[r][0] == "" for r in doc.get("required", [])):
                return True
            if any(a not in doc.get("properties", {}) for a in args):
                return True
    return False


@pytest.fixture(scope="module")
def measured():
    from experiments.bfcl_agreement import measure

    return measure()


def test_the_scorer_agrees_with_bfcls_checker_on_every_answer_kind(measured):
    kinds = measured["agreement"]
    assert set(kinds) == {"gold", "alternative", "optional_left_out", "wrong_value", "missing_required",
                          "wrong_function", "float_for_integer", "no_commas", "nested", "other_order", "no_call"}
    for kind, s in kinds.items():
        assert s["answers"] > 0 and s["agree_json"] == s["answers"], (kind, s)  # a chat student's JSON answers
        if kind != "float_for_integer":  # the built-in student's call text writes 5.0 as 5: its schema reads an int
            assert s["agree_text"] == s["answers"], (kind, s)
    # BFCL's rules, seen in its verdicts: alternatives and commas count, a float for an integer does not
    assert kinds["alternative"]["bfcl_accepts"] > 0.99 * kinds["alternative"]["answers"]
    assert kinds["float_for_integer"]["bfcl_accepts"] == 0
    assert {d["kind"] for d in measured["disagreements"]} <= {"float_for_integer"}


def test_every_gold_answer_bfcl_rejects_is_a_bug_of_its_data(measured):
    rejected = {r["id"] for r in measured["gold_rejected_by_bfcl"]}
    questions = {q["id"]: q for c in bfcl.CATEGORIES for q in bfcl.questions(c)}
    assert rejected and all(_data_bug(questions[i]) for i in rejected)
    clean = [q for q in questions.values() if q["truth"] and bfcl.readable(q) and not _data_bug(q)]
    assert len(clean) > 2000


def test_a_students_answers_are_scored_by_bfcls_checker_and_summarised_as_bfcl_does():
    qs = bfcl.sample(list(bfcl.CATEGORIES), 3, seed=1)
    assert len(qs) == 3 * len(bfcl.CATEGORIES) and qs == bfcl.sample(list(bfcl.CATEGORIES), 3, seed=1)
    assert qs != bfcl.sample(list(bfcl.CATEGORIES), 3, seed=2)
    right = {}
    for q in qs:
        gold = [{"name": c["name"], "arguments": c["arguments"]} for c in calls.loads(bfcl.label(q))]
        if not _data_bug(q) or not gold:
            assert bfcl.check(q, gold), q["id"]
        assert bfcl.check(q, None) == (q["category"] in bfcl.IRRELEVANCE)
        right[q["category"]] = (right.get(q["category"], (0, 0))[0] + bfcl.check(q, gold),
                                right.get(q["category"], (0, 0))[1] + 1)
    summary = bfcl.summaries({"simple_python": (3, 4), "multiple": (1, 2), "parallel": (0, 1),
                              "parallel_multiple": (1, 1), "irrelevance": (0, 9), "live_simple": (1, 1),
                              "live_multiple": (0, 3)})
    assert summary == {"non_live": (0.75 + 0.5 + 0 + 1) / 4, "live": 1 / 4}
