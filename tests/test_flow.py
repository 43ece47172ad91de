"""The Prefect flow with real Prefect (one session-scoped test harness), real DVC and
real MLflow on SQLite: lineage, registry tags, the gate, and a no-op rerun."""

from __future__ import annotations

import json
import re
import shutil
import sys

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from conftest import changed_params, run
from flows.cli import main as cli
from flows.lineage import champion_gate, lock_md5s, setup_mlflow
from flywheel.config import load


def client_for(project):
    cfg = load(project / "params.yaml")
    setup_mlflow(cfg, project)
    return MlflowClient(), cfg.lineage.registered_model


def test_gate_rules():
    old = {"accuracy": 0.5, "per_skill": {"a": 0.5, "b": 0.5}}
    assert champion_gate({"accuracy": 0.6, "per_skill": {"a": 0.7, "b": 0.47}}, old, 0.05)[0]
    ok, why = champion_gate({"accuracy": 0.6, "per_skill": {"a": 0.9, "b": 0.3}}, old, 0.05)
    assert not ok and "skill b drops" in why
    ok, why = champion_gate({"accuracy": 0.49, "per_skill": {"a": 0.5, "b": 0.5}}, old, 0.05)
    assert not ok and "below champion" in why
    assert champion_gate({"accuracy": 0.0, "per_skill": {}}, None, 0.05) == (True, "first model")
    with_user = dict(old, per_split={"user": 0.7})
    ok, why = champion_gate({"accuracy": 0.6, "per_skill": {"a": 0.5, "b": 0.5}, "per_split": {"user": 0.6}}, with_user, 0.05)
    assert not ok and "split user drops" in why
    assert champion_gate({"accuracy": 0.6, "per_skill": {"a": 0.5, "b": 0.5}, "per_split": {"user": 0.68}}, with_user, 0.05)[0]
    # BFCL's summaries, where both generations were scored on it: general tool calling must not fall
    with_bfcl = dict(old, bfcl={"non_live": 0.4, "live": 0.3})
    better = {"accuracy": 0.6, "per_skill": {"a": 0.5, "b": 0.5}}
    ok, why = champion_gate(dict(better, bfcl={"non_live": 0.3, "live": 0.3}), with_bfcl, 0.05)
    assert not ok and "BFCL non_live drops 0.1000" in why
    assert champion_gate(dict(better, bfcl={"non_live": 0.38, "live": 0.29}), with_bfcl, 0.05)[0]
    assert champion_gate(better, with_bfcl, 0.05)[0]  # not scored this time: nothing to compare


def test_the_lineage_parts_are_pure_functions_of_the_results(small_run):
    """What log_generation logs, computed without MLflow from the generation's results,
    read once: metrics per split and skill, the version's dataset tags, the summary."""
    from flows import lineage, report, results
    from flows.flywheel import summary_markdown
    from flows.health import loop_health

    project, _ = small_run
    cfg = load(project / "params.yaml")
    r = results.read(project, cfg, "gen-001")
    values = lineage.metric_values(r, loop_health(r, cfg.health))
    assert values["accuracy"] == r.metrics["accuracy"] and values["rows.train"] == len(r.train)
    assert {f"accuracy.{k}" for k in r.metrics["per_split"]} <= set(values)
    assert values["judge.recall"] == r.judge["recall"] and "health.diversity.new.distinct_2" in values
    md5 = lock_md5s(project)
    digests = {k: md5[p] for k, p in lineage.dataset_paths("gen-001").items()}
    tags = lineage.version_tags(r, model_md5="m", run_id="x", parent_version="3", digests=digests)
    assert tags["trained_from"] == "3" and tags["trained_from_generation"] == "gen-000"
    assert tags["dataset.training.path"] == "data/gen-001/train.parquet"
    assert tags["dataset.training.md5"] == md5["data/gen-001/train.parquet"]
    assert lineage.run_params(cfg)["train.steps"] == cfg.train.steps
    text = summary_markdown(r, {"version": "3", "promoted": False, "reason": "why", "alarms": []})
    assert f"Evaluation accuracy {r.metrics['accuracy']:.3f}" in text and "not promoted" in text
    row = report.row(r, {"version": "3", "promoted": True})
    assert row["champion"] == "v3 promoted" and row["split:seen"] == r.metrics["per_split"]["seen"]


def test_flow_runs_every_stage_and_registers_each_generation(small_run):
    project, results = small_run
    assert [r["generation"] for r in results] == ["gen-000", "gen-001"]
    assert all(r["stages_run"] == 7 and r["logged"] for r in results)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {"prepare", "train@gen-001", "expand@gen-001"} <= set(lock)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flywheel-gen-001"])))
    assert arts and arts[0].type == "markdown"
    assert "# Flywheel gen-001" in arts[0].data and "| label_ok |" in arts[0].data and "| seed |" in arts[0].data
    assert "**Loop health alarms:**" in arts[0].data
    tags = run(["git", "tag"], project).stdout.split()
    assert tags == ["gen-000", "gen-001"]
    assert "flywheel: gen-001" in run(["git", "log", "--oneline"], project).stdout
    assert run(["git", "status", "--porcelain", "dvc.lock"], project).stdout == ""


def test_mlflow_datasets_carry_the_dvc_md5s(small_run):
    project, results = small_run
    client, _ = client_for(project)
    md5 = lock_md5s(project)
    for r in results:
        mlrun = client.get_run(r["run_id"])
        assert mlrun.data.tags["mlflow.parentRunId"]
        inputs = {i.tags[0].value if i.tags else "": i.dataset for i in mlrun.inputs.dataset_inputs}
        assert set(inputs) == {"generated", "judged", "training", "evaluation"}
        for ds in inputs.values():
            source = json.loads(ds.source)["uri"]
            assert ds.digest == md5[source], source
        assert mlrun.data.metrics["accuracy"] >= 0 and "skill.weather" in mlrun.data.metrics
        assert mlrun.data.params["train.steps"] == "150"
        history = client.get_metric_history(r["run_id"], "accuracy")
        assert [h.step for h in history] == [load(project / "params.yaml").index(r["generation"])]
        artifacts = {a.path for a in client.list_artifacts(r["run_id"], "plots")}
        assert artifacts == {f"plots/{r['generation']}-summary.png"}
        metrics = mlrun.data.metrics
        assert 0 < metrics["health.diversity.new.distinct_2"] <= 1 and 0 < metrics["health.rows.real_share"] < 1
        assert "probe.mastered" in metrics and "probe.dev.failure_rate" in metrics
        assert "probe.factors_standing_out" in metrics and metrics["factors.dev_user.n"] >= 0
        assert any(k.startswith("probe.factor.length:") for k in metrics)
        assert {"metrics/failure_profile.json", "metrics/factor_failures.json"} <= {
            a.path for a in client.list_artifacts(r["run_id"], "metrics")}
        assert "health.json" in {a.path for a in client.list_artifacts(r["run_id"])}
        assert "health.alarms" in mlrun.data.tags


def test_the_failure_profile_counts_every_dev_row_under_each_factor_kind(small_run):
    import pandas as pd

    project, _ = small_run
    data = project / "data" / "gen-001"
    probe = pd.read_parquet(data / "probe.parquet")
    dev = probe[probe["split"] == "dev"]
    profile = json.loads((data / "failure_profile.json").read_text())["dev_factors"]
    for kind in ("length", "case", "calls"):  # every request has exactly one of each
        part = {k: v for k, v in profile.items() if k.startswith(kind + ":")}
        assert sum(v["rows"] for v in part.values()) == len(dev), kind
        assert sum(v["failed"] for v in part.values()) == int((~dev["correct"]).sum()), kind
    overall = float((~dev["correct"]).mean())
    for v in profile.values():
        assert v["interval"][0] <= v["failure_rate"] <= v["interval"][1]
        assert v["stands_out"] == (v["rows"] >= 20 and v["interval"][0] > overall)
    evals = pd.read_parquet(project / "data" / "eval.parquet")
    by_split = json.loads((data / "factor_failures.json").read_text())
    assert set(by_split) == set(evals["split"])
    assert sum(v["rows"] for k, v in by_split["user"].items() if k.startswith("length:")) == int(
        (evals["split"] == "user").sum())


def test_registry_versions_chain_back_to_the_seed_and_load(small_run):
    project, results = small_run
    client, name = client_for(project)
    v0, v1 = (client.get_model_version(name, r["version"]) for r in results)
    assert v0.tags["trained_from"] == "seed" and v1.tags["trained_from"] == str(v0.version)
    md5 = lock_md5s(project)
    assert v1.tags["dataset.training.md5"] == md5["data/gen-001/train.parquet"]
    assert v1.tags["generation"] == "gen-001" and v1.tags["gate"] in ("promoted", "refused")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{v1.version}")
    import pandas as pd

    from flywheel import domain, layout, store, tables
    from flywheel.config import DomainConfig

    evals = store.read_table(project / layout.EVAL, tables.EVALSET).head(20)
    preds = store.read_table(project / layout.path("gen-001", layout.PREDICTIONS), tables.PREDICTIONS).head(20)
    out = model.predict(pd.DataFrame({"request": list(evals["request"])}))
    # the calls evaluate parsed from the same answers, as canonical JSON ("" where unreadable)
    assert list(out) == [domain.get(DomainConfig()).deployed_answer(o) for o in preds["output"]]


def test_lineage_command_walks_to_the_seed(small_run, capsys):
    project, results = small_run
    assert cli(["--project", str(project), "lineage", results[-1]["version"]]) == 0
    out = capsys.readouterr().out
    assert f"v{results[-1]['version']}" in out and f"v{results[0]['version']}" in out
    assert "(the seed set)" in out and lock_md5s(project)["data/gen-000/train.parquet"] in out
    assert cli(["--project", str(project), "lineage", "999"]) == 2
    assert "no version '999'" in capsys.readouterr().err


def test_a_copied_workspace_is_warned_that_mlflow_artifacts_go_to_the_original(small_run, tmp_path, capsys):
    original, copy = small_run[0], tmp_path / "copy"
    shutil.copytree(original, copy, symlinks=True)
    assert cli(["--project", str(copy), "lineage", "champion"]) == 0
    err = capsys.readouterr().err
    assert "outside this workspace" in err and f"{(original / 'mlruns').resolve()}" in err, err
    assert setup_mlflow(load(original / "params.yaml"), original) == ""  # the original is at home


def test_rerun_on_an_up_to_date_workspace_runs_no_stage(small_run):
    from flows.flywheel import flywheel

    project, first = small_run
    again = flywheel(project=str(project))
    assert [r["stages_run"] for r in again] == [0, 0]
    assert not any(r["logged"] for r in again)
    assert [r["version"] for r in again] == [r["version"] for r in first]


def test_status_command(small_run, capsys):
    project, _ = small_run
    assert cli(["--project", str(project), "status"]) == 0
    out = capsys.readouterr().out
    assert "made: gen-000, gen-001" in out and "up to date" in out and "champion: version" in out


def test_gate_refuses_a_deliberately_worse_model(small_run, tmp_path):
    """A learning rate far too high ruins a retrained student; the champion stays.
    Run on a copy cut back to gen-000 (one generation to retrain, not two), so the
    shared workspace keeps its good students. (The copy's MLflow experiment still names
    the original's `mlruns/` as its artifact location, so the refused model's files land
    there; the registry read here is the copy's.)"""
    from flows.flywheel import flywheel

    project = tmp_path / "worse"
    shutil.copytree(small_run[0], project, symlinks=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generations"] = {"gen-000": params["generations"]["gen-000"]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    client, name = client_for(project)
    champion_before = client.get_model_version_by_alias(name, "champion").version
    with changed_params(project, "train", lr=5.0):
        worse = flywheel(project=str(project))
    assert [r["generation"] for r in worse] == ["gen-000"] and worse[0]["logged"]
    assert not any(r["promoted"] for r in worse)
    for r in worse:
        version = client.get_model_version(name, r["version"])
        assert version.tags["gate"] == "refused" and version.tags["gate_reason"]
    assert client.get_model_version_by_alias(name, "champion").version == champion_before


def test_cli_refuses_bad_arguments_and_workspaces(tmp_path, capsys):
    assert cli(["--project", str(tmp_path), "run"]) == 2
    assert "not a flywheel workspace" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli(["frobnicate"])
    assert exc.value.code == 2
    proc = run([sys.executable, "-m", "flows.cli", "--project", str(tmp_path), "status"], tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_cli_refuses_a_broken_params_file(tmp_path, capsys):
    from conftest import ROOT

    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(re.sub(r"(?m)^  steps: \d+$", "  steps: many", (ROOT / "params.yaml").read_text()))
    assert cli(["--project", str(tmp_path), "run", "--generations", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.steps: Input should be a valid integer" in err
    assert "many" in (tmp_path / "params.yaml").read_text()  # nothing was rewritten
    assert cli(["--project", str(tmp_path), "run", "--generations", "-1"]) == 2
