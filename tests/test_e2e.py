"""End to end with real DVC: a small two-generation flywheel.

The session fixture `small_project` (conftest.py) copies the project into a temp git
repo and runs the flow once (its stages are `dvc repro -s` calls); these tests then
inspect and poke that workspace with plain DVC commands.
"""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import yaml
from safetensors.torch import load_file

from conftest import changed_params, run
from flywheel import layout, store, tables

DVC = [sys.executable, "-m", "dvc"]


def lock(project):
    return yaml.safe_load((project / "dvc.lock").read_text())["stages"]


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.e2e
def test_lock_records_every_stage_of_every_generation(small_project):
    stages = lock(small_project)
    expected = {"prepare"} | {f"{s}@{g}" for s in layout.STAGES for g in ("gen-000", "gen-001")}
    assert set(stages) == expected
    # generation 1 was planned from generation 0's failures, and the lock says so.
    gen1_deps = {d["path"] for d in stages["generate@gen-001"]["deps"]}
    assert "data/gen-000/plan.parquet" in gen1_deps
    for g in ("gen-000", "gen-001"):
        metrics = json.loads((small_project / layout.path(g, layout.METRICS)).read_text())
        user = sum(1 for line in (small_project / "domains/toolcall/user.jsonl").read_text().splitlines() if line)
        assert 0 <= metrics["accuracy"] <= 1 and metrics["rows"] == 120 + user and metrics["per_skill"]
        assert set(metrics["per_split"]) == {"seen", "new_values", "new_phrasing", "user"}
        judge = json.loads((small_project / layout.path(g, layout.JUDGE_METRICS)).read_text())
        assert judge["precision"] > 0.8 and judge["teacher_errors"] > 0


@pytest.mark.e2e
def test_a_second_repro_does_nothing(small_project):
    out = run(DVC + ["repro"], small_project).stdout
    assert "Data and pipelines are up to date" in out
    assert "Running stage" not in out


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["judge@gen-001", "train@gen-001", "expand@gen-000", "prepare"])
def test_a_forced_stage_rewrites_the_same_bytes(small_project, stage):
    before = lock(small_project)[stage]["outs"]
    run(DVC + ["repro", "-f", "-s", stage], small_project)
    after = lock(small_project)[stage]["outs"]
    assert [o["md5"] for o in after] == [o["md5"] for o in before]
    assert "changed" not in run(DVC + ["status"], small_project).stdout


@pytest.mark.e2e
def test_training_changed_the_student(small_project):
    seed = load_file(small_project / layout.path(layout.SEED, layout.MODEL) / "model.safetensors")
    gen0 = load_file(small_project / layout.path("gen-000", layout.MODEL) / "model.safetensors")
    gen1 = load_file(small_project / layout.path("gen-001", layout.MODEL) / "model.safetensors")
    assert set(seed) == set(gen0)
    assert sum(not (seed[k] == gen0[k]).all() for k in seed) > len(seed) // 2
    assert any(not (gen0[k] == gen1[k]).all() for k in gen0)


@pytest.mark.e2e
def test_rows_carry_lineage_and_no_evaluation_request_is_trained_on(small_project):
    train = store.read_table(small_project / layout.path("gen-001", layout.TRAIN), tables.TRAINSET)
    evals = store.read_table(small_project / layout.EVAL, tables.EVALSET)
    assert set(train["source"]) >= {"seed", "synthetic"}
    assert set(train["generation"]) == {"seed", "gen-000", "gen-001"}
    plan0 = store.read_table(small_project / layout.path("gen-000", layout.PLAN), tables.PLAN)
    gen1 = train[train["generation"] == "gen-001"]
    assert gen1["parent_id"].notna().any() and gen1["parent_id"].dropna().isin(plan0["parent_id"]).all()
    assert train["id"].is_unique and not train["request"].isin(evals["request"]).any()


@pytest.mark.e2e
@pytest.mark.parametrize("section,change", [("train", {"lr": 0.002}), ("student", {"grad_accum": 2})])
def test_changing_a_train_key_reruns_only_train_and_what_follows(small_project, section, change):
    with changed_params(small_project, section, **change):
        status = json.loads(run(DVC + ["status", "--json"], small_project).stdout)
        assert set(status) == {"train@gen-000", "train@gen-001"}  # the stages that read it
        dry = run(DVC + ["repro", "--dry"], small_project).stdout
        ran = {line.split("'")[1] for line in dry.splitlines() if line.startswith("Running stage")}
        untouched = {"prepare", "generate@gen-000", "judge@gen-000", "compose@gen-000"}
        assert "train@gen-000" in ran and not ran & untouched


@pytest.mark.e2e
def test_a_key_of_the_domain_not_in_use_reruns_nothing_and_a_log_key_only_prepare_and_expand(small_project):
    """Every stage declares the shared domain keys and the section of the domain in use
    (`domain.${domain.name}`), so an `llm`-only key changes no toolcall stage; only
    prepare and expand read the request log's section."""
    path = small_project / "params.yaml"
    original = path.read_text()
    for edit, expected in ((lambda c: c["domain"]["llm"].update(tokenizer_vocab=3000), set()),
                           (lambda c: c["domain"]["llm"].update(skills=["add"]), set()),
                           (lambda c: c["traffic"].update(rows=50), {"prepare", "expand@gen-000", "expand@gen-001"}),
                           (lambda c: c["domain"]["toolcall"].update(vocab_min_count=19),
                            {"prepare"} | {f"{s}@{g}" for s in layout.STAGES if s != "compose"
                                           for g in ("gen-000", "gen-001")})):
        cfg = yaml.safe_load(original)
        edit(cfg)
        try:
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            status = json.loads(run(DVC + ["status", "--json"], small_project).stdout)
        finally:
            path.write_text(original)
        assert set(status) == expected


@pytest.mark.e2e
def test_push_and_pull_through_the_local_remote(small_project):
    run(DVC + ["push", "-q"], small_project)
    model = small_project / layout.path("gen-001", layout.MODEL) / "model.safetensors"
    expected = md5(model)
    model.unlink()
    run(DVC + ["pull", "-q", "train@gen-001"], small_project)
    assert md5(model) == expected


@pytest.mark.e2e
def test_a_corrupt_input_stops_the_stage_with_one_line(small_project, tmp_path):
    target = small_project / layout.path("gen-001", layout.GENERATED)
    saved = target.read_bytes()
    verdicts = small_project / layout.path("gen-001", layout.VERDICTS)
    verdicts_before = md5(verdicts)
    try:
        target.unlink()  # DVC outputs may be links into the cache: never write through them
        target.write_bytes(saved[: len(saved) // 2])
        proc = run([sys.executable, "-m", "tasks", "judge", "gen-001"], small_project, check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"error: judge: {layout.path('gen-001', layout.GENERATED)}: "
                                       f"not a readable Parquet file ({proc.stderr.split('(', 1)[1].strip()}")
        assert md5(verdicts) == verdicts_before  # the previous output is untouched
    finally:
        target.unlink()
        target.write_bytes(saved)
