"""One student interface: every kind of student subclasses `StudentKind` and is
registered with flywheel/student/ (`register_kind`, or the `flywheel.students` entry
point: `builtin` and `hf` ship), and the stages call only the interface. A third kind, a lookup table
that answers what it was trained on, runs through a generation here."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL, make_project, merge
from flywheel import layout, store, tables
from flywheel import student
from flywheel.config import load, stage_view

ROOT = Path(__file__).resolve().parents[1]
TABLE = "lookup.json"


class Lookup(student.StudentKind):
    """A student that remembers every training row and answers nothing else."""
    kind = "lookup"
    random_at_start = True  # an empty table knows nothing: the judge does not ask it

    def __init__(self, table: dict[str, str], dom):
        self.table, self.dom = table, dom

    @classmethod
    def check(cls, student, dom, root=Path(".")):
        pass

    @classmethod
    def claims(cls, folder: Path) -> bool:
        return (Path(folder) / TABLE).exists()

    @classmethod
    def make(cls, folder: Path, *, dom, tokenizer, prepare, student, seed: int) -> str:
        cls({}, dom).save(folder)
        return "student: an empty lookup table"

    @classmethod
    def load(cls, folder: Path, dom, *, trainable=False, seed=None, threads=None, base=None):
        return cls(json.loads((Path(folder) / TABLE).read_text()), dom)

    @classmethod
    def origin(cls, folder: Path) -> dict:
        return {"base": "an empty table", "revision": "", "adapter": False}

    def fit(self, requests, labels, *, train, student, seed, progress=None, contexts=None):
        self.table.update({r: self.dom.target(label) for r, label in zip(requests, labels)})
        if progress:
            progress(train.steps, 0.0)
        return [(train.steps, 0.0)]

    def answer(self, requests, *, batch_size, max_new_tokens=64, on_batch=None, temperature=0.0, seed=0,
               contexts=None, raw=False):
        if on_batch:
            on_batch(len(requests))
        return [self.table.get(r, "") for r in requests]

    def label_losses(self, requests, labels, *, batch_size, contexts=None):
        return np.array([0.0 if self.table.get(r) == self.dom.target(lab) else 10.0 for r, lab in zip(requests, labels)])

    def save(self, folder: Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / TABLE).write_text(json.dumps(self.table, sort_keys=True))

    def describe(self, rows: int, seconds: float) -> str:
        return f"{len(self.table)} rows remembered"


def test_the_registry_checks_the_interface():
    class Half(student.StudentKind):
        kind = "half"
        random_at_start = False

        @classmethod
        def claims(cls, folder):
            return False

    with pytest.raises(TypeError, match="does not implement answer, check, describe, fit, label_losses, load, make, "
                                        "origin, save"):
        student.register_kind(Half)

    class Renamed(Lookup):  # the protocol's parameter names are checked, not only the method names
        kind = "renamed"

        def answer(self, texts, *, batch_size, max_new_tokens=64, on_batch=None, temperature=0.0, seed=0):
            return []

    with pytest.raises(TypeError, match=r"answer\(self, texts, .*does not match the protocol's answer\(self, requests"):
        student.register_kind(Renamed)

    class Required(Lookup):  # a parameter of its own after the protocol's must be optional
        kind = "required"

        def answer(self, requests, *, batch_size, max_new_tokens=64, on_batch=None, temperature=0.0, seed=0,
                   contexts=None, raw=False, expected):
            return []

    with pytest.raises(TypeError, match=r"answer\(self, .*raw, expected\) does not match"):
        student.register_kind(Required)
    Required.answer.__kwdefaults__ = {"expected": None, **Required.answer.__kwdefaults__}
    Required.kind = "optional"
    assert student.register_kind(Required) is Required
    del student.KINDS._classes["optional"]  # registered only to show it is accepted
    with pytest.raises(TypeError, match="subclasses flywheel.student.StudentKind"):
        student.register_kind(type("Loose", (), {"kind": "loose", "random_at_start": True}))
    assert {"builtin", "hf"} <= set(student.kinds())  # the shipped kinds, by entry point
    with pytest.raises(student.StudentError, match="student.kind: 'nope' is not a student kind"):
        student.kind_for(type("Cfg", (), {"kind": "nope", "model": ""})())


def test_no_stage_or_flow_branches_on_the_students_kind():
    """The stages and the flows (lineage, preflight, the MLflow model) reach a student
    through flywheel/student/ only: none imports a kind's module or names its classes."""
    import ast

    for path in sorted([*(ROOT / "tasks").glob("*.py"), *(ROOT / "flows").glob("*.py")]):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
                  {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | \
                {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not modules & {"flywheel.student.hf", "flywheel.student.builtin"}, path
        assert not names & {"hf", "builtin", "HFStudent", "is_hf", "MANIFEST", "Student"}, path


def test_a_third_kind_runs_through_a_generation(tmp_path, monkeypatch):
    student.register_kind(Lookup)
    params = merge(SMALL, {"student": {"kind": "lookup"}, "generations": {"gen-000": {"prev": "seed"}},
                           "prepare": {"seed_rows": 30, "eval_rows": 60, "plan_rows": 60}, "expand": {"budget": 60}})
    project = make_project(tmp_path / "p", params, git=False)
    monkeypatch.chdir(project)
    cfg = load(Path("params.yaml"))
    for stage in ("prepare", *layout.STAGES):
        importlib.import_module(f"tasks.{stage}").main(stage_view(cfg, stage), "" if stage == "prepare" else "gen-000")
    model = layout.path("gen-000", layout.MODEL)
    assert student.kind_of(model) is Lookup and student.kind_of(layout.path(layout.SEED, layout.MODEL)) is Lookup
    assert student.origin(model)["base"] == "an empty table"  # what the MLflow lineage tags, asked of the kind
    train = store.read_table(layout.path("gen-000", layout.TRAIN), tables.TRAINSET)
    assert len(json.loads((model / TABLE).read_text())) == train["request"].nunique()
    profile = store.read_json(layout.path("gen-000", layout.FAILURE_PROFILE))
    # it answers every training row right and no held-out row: what a lookup table can do
    assert profile["splits"]["train"]["failure_rate"] == 0.0 and profile["splits"]["dev"]["failure_rate"] == 1.0
    metrics = store.read_json(layout.path("gen-000", layout.METRICS))
    assert metrics["accuracy"] == 0.0  # no evaluation request is ever a training request
    verdicts = store.read_table(layout.path("gen-000", layout.VERDICTS), tables.VERDICTS)
    assert (verdicts["student_output"] == "").all()  # prepare's table is empty: the judge did not ask it
