"""The docs' measured tables are generated from committed files (tools/docs.py): the
README's results from data/, the stage table of docs/architecture.md from dvc.yaml, the
loop experiment's tables from docs/loop*.json, the benchmarks from bench/results.json.
A table typed by hand, or left behind by a rerun, fails here."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _docs():
    spec = importlib.util.spec_from_file_location("flywheel_docs", ROOT / "tools" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_table_is_what_its_sources_give():
    docs = _docs()
    assert docs.stale(ROOT) == [], "run `python -m tools.docs` and commit"


def test_a_number_changed_by_hand_is_caught(tmp_path):
    """The check can fail: in a copy, one number of the README's table typed differently."""
    docs = _docs()
    for name in ("README.md", "params.yaml", "dvc.yaml", "data/reference.json", "experiments/fresh_clone.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    for gen in ("gen-000", "gen-001", "gen-002"):
        shutil.copytree(ROOT / "data" / gen, tmp_path / "data" / gen,
                        ignore=lambda d, names: [n for n in names if not n.endswith(".json")])
    readme = tmp_path / "README.md"
    user = json.loads((ROOT / "data/gen-002/metrics.json").read_text())["per_split"]["user"]
    text = readme.read_text()
    assert f"| {user:.3f} |" in text
    readme.write_text(text.replace(f"| {user:.3f} |", f"| {user + 0.006:.3f} |", 1))
    assert docs.rendered(tmp_path, "README.md", readme.read_text()) == text  # the command puts it back
    monkeyed = {k: v for k, v in docs.BLOCKS.items() if k == "README.md"}
    original, docs.BLOCKS = docs.BLOCKS, monkeyed
    try:
        assert docs.stale(tmp_path) == ["README.md"]
    finally:
        docs.BLOCKS = original


def test_the_stage_table_names_every_stage_of_dvc_yaml():
    import yaml

    text = (ROOT / "docs" / "architecture.md").read_text()
    for name in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        assert f"| `{name}`" in text


def test_the_reference_stamp_names_the_commit_that_made_the_outputs():
    """data/reference.json says which commit and CPU made the outputs dvc.lock records; a
    rerun that changes data/*/metrics.json without a new stamp fails here (the stamp may be
    newer than the last change: a rerun that gives the same metrics is stamped too)."""
    log = subprocess.run(["git", "log", "-1", "--format=%H", "--", "data/gen-000/metrics.json",
                          "data/gen-001/metrics.json", "data/gen-002/metrics.json"],
                         cwd=ROOT, capture_output=True, text=True)
    if log.returncode != 0 or not log.stdout.strip():
        pytest.skip("no git history here to compare the stamp with")
    stamp = json.loads((ROOT / "data" / "reference.json").read_text())
    after = subprocess.run(["git", "merge-base", "--is-ancestor", log.stdout.strip(), stamp["commit"]], cwd=ROOT,
                           capture_output=True, text=True)
    assert after.returncode == 0, (f"data/*/metrics.json last changed at {log.stdout.strip()[:7]}, after "
                                   f"data/reference.json's {stamp['commit']}")
    assert stamp["cpu"]
