"""params.yaml validation, typed Parquet I/O, and the one-line errors of the stage commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml

from conftest import ROOT, run
from flywheel import config, store, tables


def write_params(tmp_path: Path, mutate) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_shipped_params_load():
    cfg = config.load(ROOT / "params.yaml")
    assert list(cfg.generations) == ["gen-000", "gen-001", "gen-002"]
    assert cfg.compose.policy == "accumulate"


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p["train"].update(stepz=3), "train.stepz: Extra inputs are not permitted"),
    (lambda p: p["train"].update(steps="400"), "train.steps: Input should be a valid integer"),
    (lambda p: p["compose"].update(policy="hoard"), "compose.policy: Input should be"),
    (lambda p: p["generate"].update(teacher="gpt"), "generate.teacher"),
    (lambda p: p["generations"].update({"gen-009": {"prev": "gen-777"}}), "generations.gen-009.prev: 'gen-777' is not"),
    (lambda p: p.pop("judge"), "judge: Field required"),
])
def test_bad_params_name_the_key(tmp_path, mutate, expected):
    path = write_params(tmp_path, mutate)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))
    assert expected in message


def test_unknown_generation_is_refused():
    cfg = config.load(ROOT / "params.yaml")
    with pytest.raises(config.ConfigError, match="'gen-042' is not in generations"):
        cfg.generation("gen-042")


def test_stage_command_gives_one_line_and_exit_2(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text() + "\nbogus: 1\n")
    proc = run([sys.executable, "-m", "tasks", "judge", "gen-000"], tmp_path, check=False)
    assert proc.returncode == 2
    # The stage modules come from the repo via PYTHONPATH-less -m: run from a copy's root.
    assert proc.stderr.strip().count("\n") == 0 and "bogus" in proc.stderr



def test_a_profile_is_written_over_params_keeping_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    changed = config.apply_profile(ROOT / "profiles" / "smollm2.yaml", params)
    profile = yaml.safe_load((ROOT / "profiles" / "smollm2.yaml").read_text())
    cfg = config.load(params)
    assert cfg.student.model == profile["student"]["model"] and cfg.train.steps == profile["train"]["steps"]
    assert cfg.student.lora.target_modules == profile["student"]["lora"]["target_modules"]
    assert cfg.generate == config.load(ROOT / "params.yaml").generate  # what it leaves alone stays
    assert "student.model" in changed and "judge.committee" not in changed
    comments = [line for line in (ROOT / "params.yaml").read_text().splitlines() if line.lstrip().startswith("#")]
    assert comments and all(c in params.read_text() for c in comments)
    assert config.apply_profile(ROOT / "profiles" / "smollm2.yaml", params) == []  # a second time: nothing


def test_a_bad_profile_changes_nothing_and_names_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / ".dvc").mkdir()
    before = (tmp_path / "params.yaml").read_text()
    bad = tmp_path / "profile.yaml"
    bad.write_text("train:\n  steps: 12\n  stepz: 3\n")
    proc = run([sys.executable, "-m", "flows.cli", "--project", str(tmp_path), "run", "--params", str(bad)],
               ROOT, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: train.stepz: Extra inputs are not permitted"
    assert (tmp_path / "params.yaml").read_text() == before and not list(tmp_path.glob(".*.tmp"))

# The plan's first five columns: what these tests of the store need of a schema.
PLAN = pa.schema(list(tables.PLAN)[:5])


def test_table_round_trip_and_errors(tmp_path):
    df = pd.DataFrame({"plan_id": ["a"], "parent_id": [None], "functions": [["get_weather"]],
                       "skills": [["weather"]], "kind": ["explore"]})
    path = tmp_path / "plan.parquet"
    store.write_table(df, path, PLAN)
    back = store.read_table(path, PLAN)
    assert back["functions"].iloc[0].tolist() == ["get_weather"] and back["parent_id"].isna().all()

    store.write_table(df.drop(columns=["kind"]).assign(kind=[None]), tmp_path / "nulls.parquet",
                      PLAN.set(4, PLAN.field("kind").with_nullable(True)))
    with pytest.raises(store.DataError, match="nulls.parquet: column 'kind' has 1 empty values"):
        store.read_table(tmp_path / "nulls.parquet", PLAN)
    with pytest.raises(store.DataError, match="plan.parquet: missing column 'id'"):
        store.read_table(path, tables.PREDICTIONS)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:40])
    with pytest.raises(store.DataError, match="broken.parquet: not a readable Parquet file"):
        store.read_table(broken, PLAN)


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "plan.parquet"
    good = pd.DataFrame({"plan_id": ["a"], "parent_id": ["p"], "functions": [["f"]], "skills": [[]], "kind": ["k"]})
    store.write_table(good, path, PLAN)
    before = path.read_bytes()
    with pytest.raises(Exception):
        store.write_table(good.assign(functions=["not a list"]), path, PLAN)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["plan.parquet"]  # no temp file left


def test_writes_are_deterministic(tmp_path):
    df = pd.DataFrame({"plan_id": ["a", "b"], "parent_id": [None, "a"], "functions": [["f"], []],
                       "skills": [["x"], ["y"]], "kind": ["k", "k"]})
    store.write_table(df, tmp_path / "a.parquet", PLAN)
    store.write_table(df, tmp_path / "b.parquet", PLAN)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
