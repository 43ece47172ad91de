"""The `llm` domain end to end: domains/arithmetic through the Prefect flow, with a
teacher and a three-sample judge committee on a local OpenAI-compatible server,
calibration, judge-scored evaluation, lineage in MLflow; then every stage that asks a
model reproduced offline from DVC's data alone, and the API key found nowhere."""

from __future__ import annotations

import os
import shutil
import sys

import pytest
import yaml

from conftest import SMALL, make_project, merge, run
from flows.lineage import lock_md5s
from flywheel import layout, store, tables
from bench.llm_server import FakeLLM, arithmetic, arithmetic_brain

CANARY = "sk-canary-llm-domain-4d2c"
KEY_ENV = "FLYWHEEL_TEST_LLM_KEY"


def llm_params(url: str) -> dict:
    model = {"backend": "openai", "base_url": url, "api_key_env": KEY_ENV, "concurrency": 4}
    return merge(SMALL, {
        "domain": {"name": "llm", "path": "domains/arithmetic", "metric": "judge",
                   "llm": {"skills": ["add", "subtract", "multiply"]}},
        "prepare": {"plan_rows": 60, "model": {"n_positions": 64}},
        "generate": {"teacher": model | {"model": "teacher-7b"}},
        "judge": {"committee": [model | {"model": "judge-7b", "samples": 3}], "consensus": 0.6,
                  "calibration": {"gold": "gold.jsonl", "min_precision": 0.8, "min_recall": 0.8}},
        "train": {"steps": 60},
        "expand": {"budget": 60},
    })


@pytest.fixture(scope="module")
def llm_run(harness, tmp_path_factory):
    from flows.flywheel import flywheel

    os.environ[KEY_ENV] = CANARY
    with FakeLLM(arithmetic_brain(wrong_every=5)) as server:
        project = make_project(tmp_path_factory.mktemp("llm-flow"), llm_params(server.url))
        run(["git", "add", "-A"], project)
        run(["git", "commit", "-qm", "init"], project)
        results = flywheel(project=str(project))
        first_requests = server.requests
        yield project, results, server, first_requests


def test_the_flow_runs_the_llm_domain_through_every_stage(llm_run):
    project, results, server, requests = llm_run
    assert [r["generation"] for r in results] == ["gen-000", "gen-001"] and all(r["logged"] for r in results)
    assert requests > 0 and all(h["Authorization"] == f"Bearer {CANARY}" for h in server.headers)
    for gen in ("gen-000", "gen-001"):
        judge = store.read_json(project / layout.path(gen, layout.JUDGE_METRICS))
        assert judge["calibration"]["precision"] >= 0.8 and judge["calibration"]["recall"] >= 0.8
        assert judge["committee"]["members"] == 3 and judge["committee"]["kappa"] == 1.0
        verdicts = store.read_table(project / layout.path(gen, layout.VERDICTS), tables.VERDICTS)
        # the teacher's wrong answers were caught and corrected by the committee
        assert (verdicts["verdict"] == "label_wrong").sum() > 0
    train = store.read_table(project / layout.path("gen-001", layout.TRAIN), tables.TRAINSET)
    assert {"seed", "synthetic", "corrected"} <= set(train["source"])
    assert all(arithmetic(r)[1] == label for r, label in zip(train["request"], train["label"]))
    assert set(s for row in train["skills"] for s in row) <= {"add", "subtract", "multiply"}
    metrics = store.read_json(project / layout.path("gen-001", layout.METRICS))
    assert set(metrics["per_split"]) == {"seen", "new_phrasing"} and set(metrics["per_skill"]) == {
        "add", "subtract", "multiply"}


def test_lineage_records_the_model_calls(llm_run):
    import mlflow
    from mlflow import MlflowClient

    from flows.lineage import setup_mlflow
    from flywheel.config import load

    project, results, _, _ = llm_run
    setup_mlflow(load(project / "params.yaml"), project)
    client = MlflowClient()
    for r in results:
        m = client.get_run(r["run_id"]).data
        assert m.metrics["llm.judge.calls"] > 0 and m.metrics["llm.generate.calls"] > 0
        assert m.metrics["judge.committee.kappa"] == 1.0 and "llm.evaluate.cache_hits" in m.metrics
        assert m.params["judge.committee"].count("judge-7b") == 1 and KEY_ENV in m.params["judge.committee"]
    assert mlflow.get_tracking_uri().startswith("sqlite:")


def test_the_registered_model_answers_in_the_domains_terms(llm_run):
    """An `llm`-domain model from the registry loads and returns the student's answer text,
    exactly what `evaluate` recorded for the same requests (not tool calls)."""
    import mlflow
    import pandas as pd

    from flows.lineage import setup_mlflow
    from flywheel.config import load

    project, results, _, _ = llm_run
    cfg = load(project / "params.yaml")
    setup_mlflow(cfg, project)
    version = results[-1]["version"]
    model = mlflow.pyfunc.load_model(f"models:/{cfg.lineage.registered_model}/{version}")
    evals = store.read_table(project / layout.EVAL, tables.EVALSET).head(8)
    preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS).head(8)
    out = model.predict(pd.DataFrame({"request": list(evals["request"])}))
    assert list(out) == list(preds["output"]) and any(o.strip() for o in out)


def test_the_run_table_has_the_domains_columns(llm_run):
    """No toolcall split columns and no judge precision/recall (there is no truth here)."""
    from flows import report

    project, results, _, _ = llm_run
    heads = report.columns([r["table"] for r in results])
    assert {"split:seen", "split:new_phrasing"} <= set(heads)
    assert not {"split:new_values", "judge_precision", "judge_recall", "kept_label_accuracy"} & set(heads)


def test_reproduced_offline_from_dvc_data_alone(llm_run, monkeypatch):
    project, _, server, _ = llm_run
    before = lock_md5s(project)
    server.reset()
    shutil.rmtree(project / ".llm-cache")  # as on a fresh clone after `dvc pull`
    monkeypatch.setenv("FLYWHEEL_OFFLINE", "1")
    # Every stage that asks a model, forced; the others never ask one, and a forced
    # rerun of them rewrites the same bytes (tests/test_e2e.py).
    for gen in ("gen-000", "gen-001"):
        for stage in ("generate", "judge", "evaluate"):
            run([sys.executable, "-m", "dvc", "repro", "-f", "-s", f"{stage}@{gen}"], project)
    assert server.requests == 0
    after = lock_md5s(project)
    assert {k: v for k, v in after.items() if k.startswith("data/")} == \
        {k: v for k, v in before.items() if k.startswith("data/")}


def test_the_key_is_nowhere(llm_run):
    from prefect.client.orchestration import get_client

    project, _, _, _ = llm_run
    hits = [p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts
            and CANARY.encode() in p.read_bytes()]
    assert hits == []
    assert KEY_ENV in yaml.safe_load((project / "params.yaml").read_text())["judge"]["committee"][0]["api_key_env"]
    with get_client(sync_client=True) as client:
        logs = client.read_logs(limit=200)
        artifacts = client.read_artifacts()
    assert logs and not any(CANARY in log.message for log in logs)
    assert artifacts and not any(CANARY in str(a.data) for a in artifacts)
