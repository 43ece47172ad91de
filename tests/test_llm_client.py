"""The client layer against a real HTTP server on localhost (bench/llm_server.py):
concurrency, faults and retries, the cache, offline mode, budgets, a killed run resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import ROOT, env
from flywheel.config import BackendConfig, Budget
from flywheel.backends import LLMError
from flywheel.backends.cache import Cache
from flywheel.backends.client import Prompt, RateLimiter, Spend, open_client, schema_text
from flywheel.backends.committee import parse_verdict
from bench.llm_server import FakeLLM

ECHO = lambda messages, body: json.dumps({"echo": messages[-1]["content"]})  # noqa: E731


def echo_parse(text: str) -> str:
    obj = json.loads(text)
    if "echo" not in obj:
        raise ValueError("no echo")
    return obj["echo"]


def prompts(n: int, tag: str = "p") -> list[Prompt]:
    return [Prompt((("user", f"{tag} {i}"),), "t1", "echo-v1") for i in range(n)]


def client(server, tmp_path, *, budget=Budget(), offline=False, api_key=None, **kw):
    cfg = BackendConfig(backend="openai", model="m", base_url=server.url if server else "http://127.0.0.1:9/v1",
                        **({"backoff_s": 0.01, "timeout_s": 5.0} | kw))
    return open_client(cfg, Cache(tmp_path / "cache.sqlite"), Spend(budget, "judge.budget"), offline=offline,
                       api_key=api_key, where="judge.committee[0]")


@pytest.fixture
def server():
    with FakeLLM(ECHO) as s:
        yield s


def test_concurrency_is_bounded_as_configured(server, tmp_path):
    server.latency = 0.1
    c = client(server, tmp_path, concurrency=3)
    answers = c.ask(prompts(18), echo_parse)
    assert [a.value for a in answers] == [f"p {i}" for i in range(18)]
    assert server.max_in_flight == 3  # never more, and the three slots were used


def test_faults_are_retried_and_retry_after_is_honoured(server, tmp_path):
    server.faults.extend(["500", "badbody", "hang:3"])
    c = client(server, tmp_path, concurrency=1, timeout_s=1.0, max_retries=5)
    answers = c.ask(prompts(3), echo_parse)
    assert [a.value for a in answers] == ["p 0", "p 1", "p 2"] and not any(a.error for a in answers)
    assert c.stats.retries == 3 and c.stats.calls == 6 and server.requests == 6
    # a 429 asking for 0.4 s is waited out, although the configured backoff is 0.01 s
    times = []
    original = server.brain
    server.brain = lambda m, b: (times.append(time.monotonic()), original(m, b))[1]
    server.faults.append("429:0.4")
    start = time.monotonic()
    assert c.ask(prompts(1, "q"), echo_parse)[0].value == "q 0"
    assert times[0] - start >= 0.4


def test_unusable_answers_are_marked_kept_raw_and_not_cached(server, tmp_path):
    server.faults.extend(["garbage"] + ["500"] * 3)
    c = client(server, tmp_path, concurrency=1, max_retries=2)
    first = c.ask(prompts(2), echo_parse)
    assert first[0].error.startswith("unparseable answer") and first[0].value is None
    assert "probably fine" in first[0].text
    assert first[1].error == "HTTP 500 after 3 attempts" and first[1].value is None
    assert c.stats.errors == 2
    server.reset()
    again = c.ask(prompts(2), echo_parse)
    assert [a.value for a in again] == ["p 0", "p 1"]
    assert server.requests == 2  # both failed prompts were asked again, nothing came from the cache


def test_warm_cache_makes_zero_requests_and_offline_refuses_a_miss(server, tmp_path):
    client(server, tmp_path).ask(prompts(10), echo_parse)
    server.reset()
    warm = client(server, tmp_path)
    answers = warm.ask(prompts(10), echo_parse)
    assert server.requests == 0 and warm.stats.cache_hits == 10 and all(a.cached for a in answers)
    offline = client(None, tmp_path, offline=True)
    assert [a.value for a in offline.ask(prompts(10), echo_parse)] == [f"p {i}" for i in range(10)]
    with pytest.raises(LLMError, match="offline: 1 of 11 prompts"):
        offline.ask(prompts(11), echo_parse)
    assert server.requests == 0


def test_an_answer_cut_at_max_tokens_is_an_error_not_a_label(server, tmp_path):
    c = client(server, tmp_path, concurrency=1)  # one at a time: the first request gets the fault
    server.faults.extend(["length"])
    cut, whole = c.ask(prompts(2), echo_parse)
    assert cut.value is None and "max_tokens (256)" in cut.error and cut.text == '{"echo": "p 0"}'
    assert whole.value == "p 1" and not whole.error
    assert c.ask(prompts(1), echo_parse)[0].value == "p 0" and server.requests == 3  # not cached: asked again


def test_the_key_changes_with_sampling_template_and_parser(server, tmp_path):
    c = client(server, tmp_path)
    p = prompts(1)[0]
    keys = {c.key(p, 0), c.key(p, 1), c.key(Prompt(p.messages, "t2", p.parser_version), 0),
            c.key(Prompt(p.messages, p.template_version, "echo-v2"), 0),
            client(server, tmp_path, temperature=0.7).key(p, 0)}
    assert len(keys) == 5



def test_a_json_schema_is_sent_only_where_configured_and_keys_the_cache(server, tmp_path):
    schema = {"type": "object", "required": ["echo"], "properties": {"echo": {"type": "string"}}}
    free, constrained = prompts(1)[0], Prompt(prompts(1)[0].messages, "t1", "echo-v1", schema_text(schema))
    text = client(server, tmp_path)
    assert text.ask([constrained], echo_parse)[0].value == "p 0"
    assert "response_format" not in json.loads(server.bodies[-1])
    assert text.key(constrained, 0) == text.key(free, 0)  # free-text answers keep their cache keys
    server.reset()
    strict = client(server, tmp_path, response_format="json_schema")
    assert strict.ask([constrained], echo_parse)[0].value == "p 0" and server.requests == 1  # not the text answer
    sent = json.loads(server.bodies[-1])["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == schema
    assert strict.key(constrained, 0) != text.key(constrained, 0)
    assert strict.ask(prompts(1, "q"), echo_parse)[0].value == "q 0"  # a prompt without a schema: free text
    assert server.requests == 2 and "response_format" not in json.loads(server.bodies[-1])

def test_budget_stops_cleanly_and_a_rerun_continues(server, tmp_path):
    with pytest.raises(LLMError, match=r"judge.budget.calls: budget of 4 calls spent"):
        client(server, tmp_path, budget=Budget(calls=4), concurrency=1).ask(prompts(10), echo_parse)
    assert server.requests == 4
    server.reset()
    rest = client(server, tmp_path, budget=Budget(calls=6), concurrency=1)
    assert [a.value for a in rest.ask(prompts(10), echo_parse)] == [f"p {i}" for i in range(10)]
    assert server.requests == 6 and rest.stats.cache_hits == 4


def test_hard_errors_stop_the_stage(server, tmp_path):
    server.faults.append("401")
    with pytest.raises(LLMError, match="HTTP 401 for model 'm'"):
        client(server, tmp_path, concurrency=1).ask(prompts(3), echo_parse)
    with pytest.raises(LLMError, match="cannot reach http://127.0.0.1:9/v1"):
        client(None, tmp_path, max_retries=1).ask(prompts(1), echo_parse)
    with pytest.raises(LLMError, match="judge.committee\\[0\\].api_key_env: environment variable"):
        cfg = BackendConfig(backend="openai", model="m", base_url=server.url, api_key_env="NOT_SET_ANYWHERE")
        open_client(cfg, Cache(tmp_path / "c.sqlite"), Spend(Budget(), "b"), offline=False, api_key=None, where=
                    "judge.committee[0]")


def test_the_key_is_sent_as_a_bearer_token(server, tmp_path):
    client(server, tmp_path, api_key="sk-canary-123").ask(prompts(1), echo_parse)
    assert server.headers[0]["Authorization"] == "Bearer sk-canary-123"


def test_rate_limiter_keeps_every_window_under_the_limit():
    limiter = RateLimiter(rpm=4, tpm=0, window=0.3)
    stamps = [limiter.acquire(1)[0] for _ in range(10)]
    for i, t in enumerate(stamps):
        assert sum(1 for u in stamps[i:] if u < t + 0.3) <= 4
    tokens = RateLimiter(rpm=0, tpm=100, window=0.3)
    t0 = tokens.acquire(60)[0]
    assert tokens.acquire(60)[0] >= t0 + 0.3  # 120 tokens would not fit in one window


def test_rate_limiter_counts_settled_tokens_in_the_window_only():
    limiter = RateLimiter(rpm=0, tpm=100, window=0.2)
    first = limiter.acquire(90)  # an estimate ...
    limiter.settle(first, 10)  # ... the answer used less: 90 tokens are free again
    assert limiter.acquire(80)[0] - first[0] < 0.2
    late = RateLimiter(rpm=0, tpm=100, window=0.2)
    old = late.acquire(60)
    time.sleep(0.25)
    t1 = late.acquire(30)[0]  # `old` has left the window
    late.settle(old, 0)  # settling it now must not free tokens the window does not hold
    assert late.acquire(80)[0] >= t1 + 0.2  # 30 + 80 > 100: waits until the 30 leave


def test_judge_answers_are_validated_against_the_schema():
    ok = parse_verdict('Here you go:\n```json\n{"verdict": "label_wrong", "corrected_label": [], "analysis": "x"}\n```')
    assert ok.verdict == "label_wrong" and ok.corrected_label == []
    for bad, why in (('{"verdict": "maybe"}', "verdict"), ("no json here", "no JSON"), ("[1, 2]", "not a JSON object")):
        with pytest.raises(ValueError, match=why):
            parse_verdict(bad)


def test_a_killed_run_resumes_and_asks_only_what_was_not_cached(server, tmp_path):
    server.latency = 0.05
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_llm_client import client, prompts, echo_parse
        class S: url = {server.url!r}
        from pathlib import Path
        client(S, Path({str(tmp_path)!r}), concurrency=2).ask(prompts(60), echo_parse)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env(), cwd=ROOT)
    deadline = time.monotonic() + 60
    while server.requests < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        cached = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 15 <= cached < 60
    server.reset()
    server.latency = 0
    answers = client(server, tmp_path, concurrency=2).ask(prompts(60), echo_parse)
    assert [a.value for a in answers] == [f"p {i}" for i in range(60)]
    assert server.requests == 60 - cached
