"""dvc.yaml is the single definition of the DAG: check it against the code's layout."""

from __future__ import annotations

import yaml

from conftest import ROOT
from flywheel import layout

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
ORDER = ["generate", "judge", "compose", "train", "evaluate", "probe", "expand"]


def test_every_generation_stage_is_a_foreach_over_the_generations():
    assert set(DVC) == {"prepare", *ORDER}
    for name in ORDER:
        assert DVC[name]["foreach"] == "${generations}"
        assert DVC[name]["do"]["cmd"] == f"python -m tasks {name} ${{key}}"
        assert (ROOT / "tasks" / f"{name}.py").exists()


def test_only_the_judge_reads_the_truth():
    for name in ORDER:
        deps = DVC[name]["do"].get("deps", [])
        reads_truth = any(str(d).endswith(layout.TRUTH) for d in deps)
        assert reads_truth == (name == "judge"), name
    for name in ("compose", "train", "expand", "probe", "evaluate"):
        assert layout.TRUTH.split(".")[0] not in (ROOT / "tasks" / f"{name}.py").read_text()


# Keys a stage reads from another stage's section: the teacher shows the judge's rubric,
# and judge-scored evaluation asks the judge committee.
BORROWED = {"generate": {"judge.rubric"},
            "evaluate": {"judge.committee", "judge.consensus", "judge.template", "judge.rubric", "judge.budget"},
            "train": {"student.grad_accum", "student.max_length"}}  # what fit reads of `student:`
# prepare reads which student to build; everything after it reads that from the checkpoint
PREPARE_STUDENT = {f"student.{k}" for k in ("kind", "model", "revision", "lora", "dtype", "device")}


# What a stage that uses the domain reads of `domain:`: the shared keys and the section of
# the domain in use (another domain's keys are no param of it).
DOMAIN = {"domain.name", "domain.path", "domain.metric", "domain.${domain.name}"}
# Only the stages that read the request log declare its section.
TRAFFIC = {"prepare", "expand"}


def test_stages_list_only_their_own_params_section():
    for name in ORDER:
        own = {"seed", name} | DOMAIN | ({"traffic"} if name in TRAFFIC else set())
        assert set(DVC[name]["do"]["params"]) <= own | BORROWED.get(name, set()), name
        assert "domain" not in DVC[name]["do"]["params"], name  # never the whole section
    assert set(DVC["prepare"]["params"]) == {"seed", "prepare", "traffic"} | DOMAIN | PREPARE_STUDENT


def test_each_student_value_is_a_param_of_one_stage():
    """One source per value: the keys prepare records in the checkpoint and the keys fit
    reads are apart, and together they are all of `student:`."""
    from flywheel.config import StudentConfig

    assert not PREPARE_STUDENT & BORROWED["train"]
    assert PREPARE_STUDENT | BORROWED["train"] == {f"student.{k}" for k in StudentConfig.model_fields}


def _files(entries):
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries}


def test_declared_outputs_match_the_layout():
    outs = {name: _files(DVC[name]["do"].get("outs", []) + DVC[name]["do"].get("metrics", [])
                         + DVC[name]["do"].get("plots", [])) for name in ORDER}
    expected = {
        "generate": {layout.GENERATED, layout.TRUTH, layout.GENERATE_METRICS, layout.GENERATE_CALLS},
        "judge": {layout.VERDICTS, layout.JUDGE_METRICS, layout.JUDGE_CALLS},
        "compose": {layout.TRAIN, layout.DEV},
        "train": {layout.MODEL, layout.TRAIN_LOSS},
        "evaluate": {layout.METRICS, layout.SKILL_ACCURACY, layout.BFCL_ACCURACY, layout.PREDICTIONS, layout.EVALUATE_CALLS,
                     layout.FACTOR_FAILURES},
        "probe": {layout.PROBE, layout.FAILURE_PROFILE},
        "expand": {layout.PLAN},
    }
    for name, files in expected.items():
        assert outs[name] == {f"data/${{key}}/{f}" for f in files}, name
    assert _files(DVC["prepare"]["outs"]) == {
        str(layout.EVAL), str(layout.path(layout.SEED, layout.TRAIN)),
        str(layout.path(layout.SEED, layout.PLAN)), str(layout.path(layout.SEED, layout.PROBE)),
        str(layout.path(layout.SEED, layout.MODEL))}


def test_calls_files_persist_across_reruns():
    """The model answers a stage used survive `dvc repro` (it answers from them offline)."""
    for name, f in (("generate", layout.GENERATE_CALLS), ("judge", layout.JUDGE_CALLS),
                    ("evaluate", layout.EVALUATE_CALLS)):
        entry = next(e for e in DVC[name]["do"]["outs"] if isinstance(e, dict) and f"data/${{key}}/{f}" in e)
        assert entry[f"data/${{key}}/{f}"] == {"persist": True}, name


def test_no_stage_reads_the_evaluation_splits_factor_failures():
    # The user split's factor failures (evaluate's factor_failures.json) are for reading by
    # people and MLflow: a stage that makes training data must not aim at them.
    for name in ORDER:
        deps = [str(d) for d in DVC[name]["do"].get("deps", [])]
        assert not any(d.endswith(layout.FACTOR_FAILURES) for d in deps), name
        if name != "evaluate":
            assert "FACTOR_FAILURES" not in (ROOT / "tasks" / f"{name}.py").read_text(), name
