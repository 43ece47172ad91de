"""The judge stage with an LLM committee, for real: `dvc repro` in a project whose
params point at an OpenAI-compatible server on localhost (bench/llm_server.py) or at a
local transformers model; the cache and calls file, offline mode, faults, the key."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import SMALL, make_project, merge, run
from flywheel import layout, store, tables
from bench.llm_server import FakeLLM, toolcall_brain

CANARY = "sk-canary-7f3a9e1b5c"
KEY_ENV = "FLYWHEEL_TEST_JUDGE_KEY"
ONE_GEN = merge(SMALL, {"generations": {"gen-000": {"prev": "seed"}}})
JUDGE = "judge@gen-000"


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def set_committee(project: Path, committee: list, **judge) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["judge"].update(committee=committee, **judge)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def repro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", "repro", *args], project, check=check)


def repro_checkout(project: Path, stage: str) -> None:
    run([sys.executable, "-m", "dvc", "checkout", "-q", stage], project)


@pytest.fixture(scope="module")
def oracle():
    truth: dict[str, str] = {}
    with FakeLLM(toolcall_brain(truth)) as server:
        server.truth = truth
        yield server


@pytest.fixture(scope="module")
def judged(oracle, tmp_path_factory):
    """gen-000 judged by the embedded checks alone, then by the checks plus the oracle."""
    import os

    os.environ[KEY_ENV] = CANARY
    project = make_project(tmp_path_factory.mktemp("llm-judge"), ONE_GEN)
    logs = [repro(project, JUDGE)]
    embedded = store.read_json(project / layout.path("gen-000", layout.JUDGE_METRICS))
    rows = store.read_table(project / layout.path("gen-000", layout.GENERATED), tables.GENERATED)
    truth = store.read_table(project / layout.path("gen-000", layout.TRUTH), tables.TRUTH)
    oracle.truth.update(dict(zip(rows["request"], rows.merge(truth, on="id")["true_label"])))
    set_committee(project, [{"backend": "openai", "base_url": oracle.url, "model": "oracle", "concurrency": 4,
                             "api_key_env": KEY_ENV, "samples": 2}])
    oracle.reset()
    logs.append(repro(project, JUDGE))
    return project, embedded, logs


def test_the_committee_decides_what_the_checks_cannot(judged, oracle):
    project, embedded, _ = judged
    report = store.read_json(project / layout.path("gen-000", layout.JUDGE_METRICS))
    verdicts = store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    asked = verdicts["judge"] == "oracle"
    assert report["committee"]["asked"] == int(asked.sum()) > 0 and report["committee"]["kappa"] == 1.0
    assert oracle.headers and all(h["Authorization"] == f"Bearer {CANARY}" for h in oracle.headers)
    # errors that pass every check (swapped arguments, a dropped optional) are now caught
    assert report["recall"] > embedded["recall"] + 0.2
    assert report["precision"] >= embedded["precision"] - 0.01
    assert report["kept_label_accuracy"] > embedded["kept_label_accuracy"]
    assert (verdicts.loc[asked, "agreement"] == 1.0).all() and verdicts.loc[~asked, "agreement"].isna().all()


def test_rerun_on_a_warm_cache_and_offline_from_the_calls_file_make_no_request(judged, oracle, monkeypatch):
    project, _, _ = judged
    verdicts = project / layout.path("gen-000", layout.VERDICTS)
    before = md5(verdicts)
    oracle.reset()
    repro(project, "-f", "-s", JUDGE)
    assert oracle.requests == 0 and md5(verdicts) == before
    # a fresh clone has no SQLite cache, only DVC's data: the calls file answers everything
    import shutil

    shutil.rmtree(project / ".llm-cache")
    monkeypatch.setenv("FLYWHEEL_OFFLINE", "1")
    repro(project, "-f", "-s", JUDGE)
    assert oracle.requests == 0 and md5(verdicts) == before
    # offline, a prompt never asked (the template changed) is an error, not a call
    template = project / "domains" / "toolcall" / "judge.jinja"
    original = template.read_text()
    template.write_text(original + "Be brief.\n")
    try:
        proc = repro(project, "-s", JUDGE, check=False)
    finally:
        template.write_text(original)
    assert proc.returncode != 0 and oracle.requests == 0
    repro_checkout(project, JUDGE)  # DVC removed the output before the command ran; its cache keeps it
    assert md5(verdicts) == before
    err = [line for line in proc.stderr.splitlines() if line.startswith("error: judge:")]
    assert len(err) == 1 and "offline:" in err[0] and "not cached" in err[0]


def test_unusable_judge_answers_are_held_out_and_asked_again(judged, oracle):
    project, _, _ = judged
    import shutil

    shutil.rmtree(project / ".llm-cache")
    (project / layout.path("gen-000", layout.JUDGE_CALLS)).unlink()
    oracle.reset()
    oracle.faults.extend(["garbage"] * 6 + ["500"] * 18)
    set_committee(project, [{"backend": "openai", "base_url": oracle.url, "model": "oracle", "concurrency": 1,
                             "api_key_env": KEY_ENV, "max_retries": 2, "backoff_s": 0.01}])
    repro(project, "-f", "-s", JUDGE)
    verdicts = store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    held = verdicts[verdicts["verdict"] == "judge_error"]
    assert len(held) == 6 + 6  # 6 unparseable answers, 6 prompts whose 3 attempts all got HTTP 500
    assert held["final_label"].isna().all()
    assert held["reason"].str.contains("unparseable answer|HTTP 500 after 3 attempts").all()
    asked = int((verdicts["judge"] == "oracle").sum())
    oracle.reset()
    repro(project, "-f", "-s", JUDGE)
    after = store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    assert oracle.requests == 12 and (after["verdict"] != "judge_error").all()
    assert asked == int((after["judge"] == "oracle").sum())


def test_calibration_refuses_a_judge_below_the_floor(judged, oracle):
    project, _, _ = judged
    gold = project / "domains" / "toolcall" / "gold.jsonl"
    rows = store.read_table(project / layout.path("gen-000", layout.GENERATED), tables.GENERATED).head(12)
    truth = oracle.truth
    lines = []
    for i, r in enumerate(rows.itertuples()):
        wrong = i % 3 == 0
        label = '[{"arguments":{"city":"oslo"},"name":"get_weather"}]' if wrong else truth[r.request]
        lines.append(pd.Series({"input": r.request, "output": label, "label_correct": not wrong}).to_json())
    gold.write_text("\n".join(lines) + "\n")
    committee = [{"backend": "openai", "base_url": oracle.url, "model": "oracle", "api_key_env": KEY_ENV}]
    set_committee(project, committee, calibration={"gold": "gold.jsonl", "min_precision": 0.9, "min_recall": 0.9})
    repro(project, "-s", JUDGE)
    report = store.read_json(project / layout.path("gen-000", layout.JUDGE_METRICS))
    assert report["calibration"]["precision"] == 1.0 and report["calibration"]["recall"] == 1.0
    # a judge that says label_ok to everything finds nothing: refused before it judges
    oracle.brain, good = (lambda m, b: '{"verdict": "label_ok"}'), oracle.brain
    try:
        set_committee(project, [dict(committee[0], model="yes-man")],
                      calibration={"gold": "gold.jsonl", "min_precision": 0.0, "min_recall": 0.5})
        before = md5(project / layout.path("gen-000", layout.VERDICTS))
        proc = repro(project, "-s", JUDGE, check=False)
    finally:
        oracle.brain = good
    assert proc.returncode != 0
    repro_checkout(project, JUDGE)
    assert md5(project / layout.path("gen-000", layout.VERDICTS)) == before
    assert "judge.calibration.min_recall: the committee's recall 0.000" in proc.stderr


def test_the_key_is_never_written(judged):
    project, _, logs = judged
    hits = [p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts
            and CANARY.encode() in p.read_bytes()]
    assert hits == []
    assert all(CANARY not in log.stdout + log.stderr for log in logs)


def _tiny_judge_model(path: Path, answer: str, prompts: list[str]) -> None:
    """A real transformers model trained here, in seconds, to answer every prompt with `answer`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(prompts + [answer] * 50, trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<pad>", "<unk>", "<eos>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(hf), n_positions=2048, n_embd=64, n_layer=2, n_head=2,
                                       bos_token_id=None, eos_token_id=hf.eos_token_id,
                                       pad_token_id=hf.pad_token_id))
    target = hf(answer)["input_ids"] + [hf.eos_token_id]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(300):
        p = hf(prompts[step % len(prompts)])["input_ids"]
        ids = torch.tensor([p + target])
        labels = torch.tensor([[-100] * len(p) + target])
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(path, safe_serialization=True)
    hf.save_pretrained(path)


def test_transformers_backend_judges_through_the_same_code(judged, tmp_path):
    from flywheel.backends.committee import judge_prompt
    from flywheel.backends import templates
    from flywheel.toolcall.phrasings import CATALOG

    project, _, _ = judged
    template = templates.load(project / "domains" / "toolcall" / "judge.jinja")
    verdicts = store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    rendered = []
    for r in verdicts.head(8).itertuples():
        msgs = judge_prompt(template, request=r.request, label=r.label, student_output=r.student_output, rubric="",
                            catalog=CATALOG.describe(), skills=[]).messages
        rendered.append("\n".join(f"{role}: {c}" for role, c in msgs) + "\nassistant:")
    model_dir = tmp_path / "tiny-judge"
    _tiny_judge_model(model_dir, '{"verdict": "model_wrong"}', rendered)
    set_committee(project, [{"backend": "transformers", "model": str(model_dir), "concurrency": 8,
                             "max_tokens": 24}], calibration={"gold": ""})
    repro(project, "-s", JUDGE)
    after = store.read_table(project / layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    report = store.read_json(project / layout.path("gen-000", layout.JUDGE_METRICS))
    asked = after["judge"] == "tiny-judge"
    assert asked.sum() == report["committee"]["asked"] > 0
    # the local model's answers went through the same parser and vote as the server's
    assert (after.loc[asked, "verdict"] == "model_wrong").mean() > 0.9
    # "the label stands" keeps a label that passed every check, never one that failed one
    kept = after.loc[asked & after["final_label"].notna()]
    assert len(kept) > 0 and (kept["final_label"] == kept["label"]).all()
    from flywheel.toolcall.calls import loads
    from flywheel.toolcall.verifier import check

    failed_checks = asked & pd.Series([bool(check(r, loads(lab), CATALOG)) for r, lab in zip(after["request"], after["label"])])
    assert failed_checks.any() and after.loc[failed_checks, "final_label"].isna().all()


def test_a_model_teacher_labels_toolcall_requests_last(judged, oracle):
    """Runs last: it regenerates gen-000 with a model teacher (the oracle, wrong on purpose
    now and then, and twice unreadable); the simulation still knows the truth."""
    import random

    from flywheel.config import load
    from flywheel.stage import stage_seed
    from flywheel.gate import Gate
    from flywheel.toolcall.teacher import draw

    project, _, _ = judged
    cfg = load(project / "params.yaml")
    plan = store.read_table(project / layout.path("seed", layout.PLAN), tables.PLAN)
    evals = store.read_table(project / layout.EVAL, tables.EVALSET)
    pool = store.read_table(project / layout.path("seed", layout.TRAIN), tables.TRAINSET)
    # the stage draws its requests before asking the teacher, so the test can draw the same ones
    drawn = draw(random.Random(stage_seed(cfg.seed, "gen-000", "generate")), plan,
                 Gate(set(evals["request"]), set(pool["request"])))
    from flywheel.toolcall.calls import dumps

    truth = {req.text: dumps(req.calls) for _, req, _ in drawn}
    brain = toolcall_brain(truth, wrong_every=7)
    with FakeLLM(brain) as teacher:
        teacher.faults.extend(["garbage", "garbage"])
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["generate"]["teacher"] = {"backend": "openai", "base_url": teacher.url, "model": "teacher-oracle",
                                         "concurrency": 1}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        repro(project, "-s", "generate@gen-000")
        assert teacher.requests == len(drawn)
    rows = store.read_table(project / layout.path("gen-000", layout.GENERATED), tables.GENERATED)
    kinds = store.read_table(project / layout.path("gen-000", layout.TRUTH), tables.TRUTH)
    report = store.read_json(project / layout.path("gen-000", layout.GENERATE_METRICS))
    assert list(rows["request"]) == [req.text for _, req, _ in drawn] and (rows["teacher"] == "teacher-oracle").all()
    errors = rows[rows["error"] != ""]
    assert len(errors) == report["teacher_errors"] == 2 and (errors["label"] == "").all()
    assert errors["raw"].str.contains("probably fine").all()
    ok = rows[rows["error"] == ""].merge(kinds, on="id")
    wrong = ok["label"] != ok["true_label"]
    assert wrong.any() and (ok.loc[wrong, "error_kind"] == "model_label").all()
    assert (ok.loc[~wrong, "error_kind"] == "").all()
