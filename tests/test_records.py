"""Logs as the field writes them: OpenAI chat-completions records (a system prompt, per-
request tools drawn from a 21-function catalog with arrays and nested objects, the deployed
model's tool_calls, people's contacts in the message text) through two generations of the
Prefect flow, the local test server as teacher and judge, a Hugging Face student prompted
with each row's own tools. Then bad records: one line naming the file, line and field."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from catalogs import CANARIES, FULL, library_brain, records_folder
from conftest import SMALL, make_project, merge, run
from flywheel import layout, store, tables
from flywheel.store import DataError
from bench.llm_server import FakeLLM

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
NAMES = [f["function"]["name"] for f in FULL]


@pytest.fixture(scope="module")
def records_run(harness, tmp_path_factory):
    from bench.hf_models import tiny_llama
    from flows.flywheel import flywheel

    truth: dict = {}
    with FakeLLM(library_brain(truth)) as server:
        model = {"backend": "openai", "base_url": server.url, "concurrency": 4}
        params = merge(SMALL, {
            "domain": {"path": "domains/library",
                       "toolcall": {"tools": "library.yaml", "user_file": "eval.jsonl", "seed_file": "seed.jsonl"}},
            "traffic": {"file": "logs/traffic.jsonl", "rows": 40, "slice": "time"},
            "prepare": {"plan_rows": 30}, "expand": {"budget": 30},
            "generate": {"teacher": model | {"model": "teacher"}},
            "judge": {"committee": [model | {"model": "judge"}], "batch_size": 32},
            "student": {"model": "models/tiny", "max_length": 512, "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                                                                            "target_modules": ["q_proj", "v_proj"]}},
            "train": {"steps": 10, "batch_size": 8, "lr": 0.01, "warmup_steps": 2, "log_every": 5},
            "evaluate": {"batch_size": 32, "max_new_tokens": 48}, "probe": {"batch_size": 32},
        })
        project = make_project(tmp_path_factory.mktemp("records"), params)
        truth.update(records_folder(project))
        texts = [json.dumps(f) for f in FULL] + list(truth) + [json.dumps(c) for c in truth.values()]
        tiny_llama(project / "models" / "tiny", texts)
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "init"], project)
        results = flywheel(project=str(project))
        yield project, results, server, dict(truth)


def _offered(context) -> list[str]:
    return sorted(t["function"]["name"] for t in json.loads(context)["tools"])


def test_records_flow_through_two_generations_with_their_own_tools(records_run):
    from flywheel.redact import DEFAULT_PATTERNS, Redactor

    project, results, _, truth = records_run
    assert [r["generation"] for r in results] == ["gen-000", "gen-001"]
    red = Redactor(dict(DEFAULT_PATTERNS))
    sent = {}
    for line in (project / "logs" / "traffic.jsonl").read_text().splitlines():
        rec = json.loads(line)
        request = " ".join(red(rec["messages"][-1]["content"]).split())
        sent.setdefault(request, sorted(t["function"]["name"] for t in rec["tools"]))
    for gen in ("gen-000", "gen-001"):
        rows = store.read_table(project / layout.path(gen, layout.GENERATED), tables.GENERATED)
        sources = rows["source"].value_counts().to_dict()
        print(f"RECORDS {gen} rows per source {sources}")
        assert sources.get(tables.TRAFFIC, 0) > 0 and sources.get(tables.SYNTHETIC, 0) > 0
        logged = rows[rows["source"] == tables.TRAFFIC]
        assert logged["context"].notna().all()  # each logged row carries what its request offered
        assert all(_offered(c) == sent[r] for r, c in zip(logged["request"], logged["context"]))
        assert rows.loc[rows["source"] != tables.TRAFFIC, "context"].isna().all()  # written rows: the catalog
        train = store.read_table(project / layout.path(gen, layout.TRAIN), tables.TRAINSET)
        assert (train["source"] == tables.TRAFFIC).any() and train.loc[train["source"] == tables.TRAFFIC,
                                                                        "context"].notna().all()
    evals = store.read_table(project / layout.EVAL, tables.EVALSET)
    assert evals["context"].notna().all() and len(evals) == 40
    metrics = store.read_json(project / layout.path("gen-001", layout.METRICS))
    assert 0 <= metrics["per_split"]["user"] <= 1


def test_the_hf_student_is_prompted_with_each_rows_own_tools(records_run):
    import os

    from flywheel import domain
    from flywheel.config import load
    from flywheel.student.hf import HFStudent
    from flywheel.toolcall import records

    project, _, _, _ = records_run
    cfg = load(project / "params.yaml")
    cwd = os.getcwd()
    os.chdir(project)
    try:
        dom = domain.get(cfg.domain)
        student = HFStudent.load(layout.path("gen-001", layout.MODEL), dom)
        train = store.read_table(layout.path("gen-001", layout.TRAIN), tables.TRAINSET)
    finally:
        os.chdir(cwd)
    checked = 0
    for request, context in zip(train["request"], train["context"]):
        prompt = student.tok.decode(student.prompt_ids(request, records.prompt(request, context)))
        shown = {n for n in NAMES if f" {n}" in prompt.split("<|end|>")[0]}
        if isinstance(context, str):
            assert shown == set(_offered(context)), prompt[:300]
            for turn in json.loads(context)["messages"]:  # its earlier turns, before the request
                assert turn["content"] in prompt
            checked += 1
        else:
            assert shown == set(NAMES)  # a written row: the catalog's tools
        assert prompt.rstrip().endswith(f"{request}<|end|><|assistant|>")
    assert checked > 10


def test_no_canary_of_the_messages_reaches_the_server_or_a_file(records_run):
    project, _, server, _ = records_run
    traffic_file = project / "logs" / "traffic.jsonl"
    needles = [c.encode() for c in CANARIES]
    assert all(n in traffic_file.read_bytes() for n in needles)  # in system prompts and user turns
    for body in server.bodies:
        assert not any(n in body or n.decode() in json.dumps(json.loads(body)) for n in needles)
    searched = 0
    for path in project.rglob("*"):
        if path.is_file() and path != traffic_file and ".git" not in path.parts:
            assert not any(n in path.read_bytes() for n in needles), f"a canary in {path}"
            searched += 1
    assert searched > 50


def test_a_call_of_a_tool_the_request_did_not_offer_is_wrong(tmp_path):
    from catalogs import write_library
    from flywheel import domain
    from flywheel.config import DomainConfig
    from flywheel.toolcall import records
    from flywheel.verdicts import WRONG

    write_library(tmp_path, tools=FULL)
    dom = domain.get(DomainConfig(path=str(tmp_path), toolcall={"tools": "library.yaml"}))
    offered = records.context_json({"messages": [], "tools": [f for f in FULL if f["function"]["name"] == "renew_loan"]})
    renew = json.dumps([{"name": "renew_loan", "arguments": {"loan_id": 4521}}])
    find = json.dumps([{"name": "find_book", "arguments": {"title": "winter bees"}}])
    import pandas as pd

    rows = pd.DataFrame({"request": ["renew loan 4521", "find winter bees"], "label": [renew, find],
                         "error": ["", ""], "context": [offered, offered]})
    verdicts = dom.first_verdicts(rows, None, use_repair=False)
    assert verdicts.loc[0, "verdict"] not in WRONG and verdicts.loc[1, "verdict"] in WRONG
    assert "unknown function 'find_book'" in verdicts.loc[1, "reason"]
    out = "find_book ( title = winter bees )"
    assert dom.score_with([find, find], [out, out], [None, offered]) == [True, False]


def _record(**change) -> dict:
    rec = {"messages": [{"role": "system", "content": "desk"}, {"role": "user", "content": "renew loan 4521"}],
           "tools": [f for f in FULL if f["function"]["name"] == "renew_loan"],
           "response": {"tool_calls": [{"type": "function", "function": {"name": "renew_loan",
                                                                          "arguments": "{\"loan_id\": 4521}"}}]}}
    rec.update(change)
    return rec


def _call(name: str, arguments: str) -> dict:
    return {"tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}


BAD_RECORDS = [
    ("a tool_calls entry naming no offered tool", _record(response=_call("find_book", "{}")),
     "line 2: response.tool_calls[0].function.name: 'find_book' is not one of the tools offered"),
    ("arguments that are not JSON", _record(response=_call("renew_loan", "{loan_id: 4521")),
     "line 2: response.tool_calls[0].function.arguments: not JSON"),
    ("a message without a role", _record(messages=[{"content": "hi"}, {"role": "user", "content": "renew 4521"}]),
     "line 2: messages[0].role: missing"),
]


@pytest.mark.parametrize("case,record,names", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_a_bad_record_is_one_line_naming_file_line_and_field(tmp_path, case, record, names):
    from flywheel.redact import Redactor
    from flywheel.toolcall import traffic

    path = tmp_path / "traffic.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError) as err:
        traffic.read(path, Redactor({}))
    assert str(err.value) .startswith(f"{path}: ") and names in str(err.value) and "\n" not in str(err.value)


def test_flywheel_run_refuses_a_bad_record_before_writing_anything(tmp_path):
    from catalogs import write_library

    project = make_project(tmp_path / "p", merge(SMALL, {
        "domain": {"path": "domains/library", "toolcall": {"tools": "library.yaml", "user_file": "eval.jsonl"}},
        "traffic": {"file": "logs/traffic.jsonl", "rows": 10},
        "generate": {"teacher": {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "t"}}}),
        git=False)
    folder = project / "domains" / "library"
    shutil.copytree(project / "domains" / "toolcall", folder, ignore=shutil.ignore_patterns("user.jsonl"))
    write_library(folder, tools=FULL)
    (folder / "eval.jsonl").write_text(json.dumps({"input": "renew loan 4521",
                                                   "output": [{"name": "renew_loan", "arguments": {"loan_id": 4521}}]})
                                       + "\n")
    (project / "logs").mkdir(exist_ok=True)
    (project / "logs" / "traffic.jsonl").write_text("".join(json.dumps(r) + "\n" for _, r, _ in BAD_RECORDS[:1]))
    before = sorted(p for p in project.rglob("*") if p.is_file())
    proc = run([FLYWHEEL, "run"], project, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("error: ") and "traffic.jsonl: line 1: response.tool_calls[0].function.name" in lines[0]
    assert sorted(p for p in project.rglob("*") if p.is_file()) == before
