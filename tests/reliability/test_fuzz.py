"""Property-based tests (hypothesis): the config loader and the parsers of model answers
either return a value or raise their own one-line error, whatever they are given: never
another exception, never a traceback."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from flywheel import llm_domain
from flywheel.config import Config, ConfigError, load
from flywheel.backends.committee import JudgeAnswer, parse_verdict
from flywheel.toolcall import calls

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())
# CI draws the same examples every time (a red CI must be reproducible); elsewhere each
# run explores new ones, and `--hypothesis-seed=N` replays a run.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=os.environ.get("CI") == "true")

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(DEFAULT))


@st.composite
def mutated_params(draw):
    params = json.loads(json.dumps(DEFAULT))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = params
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return params


def _load_text(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return load(path)
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and message.startswith(str(path)), message
            return exc


@SETTINGS
@given(mutated_params())
def test_config_loader_on_mutated_params(params):
    result = _load_text(yaml.safe_dump(params, sort_keys=False))
    assert isinstance(result, (Config, ConfigError))


@SETTINGS
@given(st.text(max_size=300))
def test_config_loader_on_any_text(text):
    assert isinstance(_load_text(text), (Config, ConfigError))


def test_config_loader_on_deep_nesting():
    assert isinstance(_load_text("a: " + "[" * 5000), ConfigError)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=10)
answers = st.one_of(
    st.text(max_size=400),
    st.builds(lambda pre, v, post: f"{pre}{json.dumps(v)}{post}", st.text(max_size=40), json_values,
              st.text(max_size=40)),
    st.builds(lambda v: f"```json\n{json.dumps(v)}\n```", json_values),
    st.builds(lambda verdict, label: json.dumps({"verdict": verdict, "corrected_label": label}),
              st.sampled_from(["label_ok", "label_wrong", "model_wrong", "both_wrong", "maybe"]), json_values),
)


def _parses_or_refuses(parse, text):
    try:
        return parse(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@SETTINGS
@given(answers)
def test_answer_parsers_return_a_value_or_a_value_error(text):
    label = _parses_or_refuses(calls.parse_json, text)
    assert label is None or calls.canonical(json.loads(label)) == label  # canonical and stable
    verdict = _parses_or_refuses(parse_verdict, text)
    assert verdict is None or isinstance(verdict, JudgeAnswer)
    for metric in ("exact", "json"):
        pair = _parses_or_refuses(llm_domain.parse_teacher(metric), text)
        assert pair is None or (pair[0].strip() and pair[1])


def test_answer_parsers_refuse_pathological_answers():
    for text in ("[" * 100_000, "{" * 300_000, "x" * 300_000):
        for parse in (calls.parse_json, parse_verdict, llm_domain.parse_teacher("json")):
            assert _parses_or_refuses(parse, text) is None


def test_a_key_with_a_newline_is_named_on_one_line():
    """Found by the fuzzer: a key "\\n" made the error two lines."""
    result = _load_text(yaml.safe_dump(DEFAULT | {"\n": None}))
    assert isinstance(result, ConfigError) and "'\\n'" in str(result)
