"""The committee's vote, agreement, templates, and the llm domain's file reader."""

from __future__ import annotations

import json

import pytest

from flywheel.config import ConfigError
from flywheel.backends import templates
from flywheel.backends.client import Answer
from flywheel.backends.committee import JudgeAnswer, decide, fleiss_kappa
from flywheel.examples import canon, read_examples
from flywheel.store import DataError


def vote(*verdicts, fix=None):
    return [Answer(error="timeout") if v is None else
            Answer(value=JudgeAnswer(verdict=v, corrected_label=fix if v.endswith("wrong") else None))
            for v in verdicts]


def test_majority_with_consensus_stands_and_carries_its_correction():
    d = decide(vote("label_wrong", "label_wrong", "label_ok", fix="42"), 0.6, lambda v: canon(v, "exact"))
    assert (d.verdict, d.corrected, round(d.agreement, 2)) == ("label_wrong", "42", 0.67)


def test_no_consensus_and_ties_are_held_out_not_guessed():
    assert decide(vote("label_wrong", "label_ok", "model_wrong"), 0.5, str).verdict == "no_consensus"
    assert decide(vote("label_wrong", "label_ok"), 0.5, str).verdict == "no_consensus"  # a tie
    # errors count against consensus: 1 of 3 members is not a majority of the committee
    assert decide(vote("label_ok", None, None), 0.5, str).verdict == "no_consensus"
    d = decide(vote(None, None), 0.5, str)
    assert d.verdict == "judge_error" and "timeout" in d.analysis


def test_fleiss_kappa_matches_hand_computed_values():
    assert fleiss_kappa([["a", "a"], ["b", "b"], ["a", "a"]]) == 1.0
    # two raters, 4 rows, agreement on 2: p_bar 0.5, p_e 0.5 -> 0
    assert fleiss_kappa([["a", "a"], ["b", "b"], ["a", "b"], ["b", "a"]]) == 0.0
    assert fleiss_kappa([["a"], ["b"]]) is None  # one rater: no agreement to measure
    assert fleiss_kappa([["a", None], ["b", "b"]]) == 1.0  # rows with a missing answer are left out


def test_templates_render_messages_and_name_undefined_variables(tmp_path):
    path = tmp_path / "judge.jinja"
    path.write_text("[system]\nbe strict\n[user]\nREQUEST: {{ request }}\nLABEL: {{ lable }}\n")
    t = templates.load(path)
    with pytest.raises(ConfigError, match=r"judge.jinja: line 5: 'lable' is undefined"):
        t.render(request="x", label="y")
    path.write_text("[system]\nbe strict\n[user]\nREQUEST: {{ request }}\n")
    msgs = templates.load(path).render(request="{{ 7 * 7 }}")
    assert msgs == (("system", "be strict"), ("user", "REQUEST: {{ 7 * 7 }}"))  # model text stays data
    assert templates.load(path).version != t.version


def test_llm_examples_are_read_with_one_line_errors(tmp_path):
    good = tmp_path / "seed.jsonl"
    good.write_text(json.dumps({"input": "what is  2 plus 2", "output": "4", "skills": "add"}) + "\n\n"
                    + json.dumps({"input": "x", "output": {"b": 1, "a": 2}}) + "\n")
    df = read_examples(good, "json", split="seed")
    assert list(df["request"]) == ["what is 2 plus 2", "x"] and list(df["label"]) == ["4", '{"a":2,"b":1}']
    assert list(df["skills"]) == [["add"], ["untagged"]]
    for text, why in (('{"input": "a"}\n', "line 1: 'output' is missing"),
                      ('{"input": "a", "output": "1"}\n{oops\n', "line 2: not valid JSON"),
                      ('{"input": "", "output": "1"}\n', "line 1: 'input' must be a non-empty string"),
                      ("", "no examples")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(DataError, match=why):
            read_examples(bad, "exact", split="seed")
    (tmp_path / "latin.jsonl").write_bytes(b'{"input": "caf\xe9", "output": "1"}\n')
    with pytest.raises(DataError, match="latin.jsonl: not UTF-8"):
        read_examples(tmp_path / "latin.jsonl", "exact", split="seed")
