"""The real-student report (experiments/real_student.py, docs/real-student.md): each SmolLM2
generation is set beside the built-in generation that had finished by the same elapsed
time, and a row says how it was trained. The runs themselves take an hour a generation
and are not run here."""

from __future__ import annotations

import json

from experiments import real_student

STAGES = {s: 1.0 for s in real_student.STAGES}


def _gen(name: str, user: float, minutes: float, steps: int, prefix_grad: bool = True) -> dict:
    return {"generation": name, "user": user, "eval": 0.5, "stage_seconds": STAGES, "elapsed_s": minutes * 60,
            "commit": "abc1234", "model_mb": 1.0,
            "train": {"steps": steps, "batch_size": 16, "lr": 0.001, "prefix_grad": prefix_grad}}


def test_each_smollm2_generation_meets_the_builtin_one_finished_by_then(tmp_path):
    (tmp_path / "experiments").mkdir()
    data = {"cpu": "Test CPU", "commit": "abc1234", "students": {
        "smollm2": {"generations": [_gen("gen-000", 0.0, 67, 12), _gen("gen-001", 0.25, 120, 40, False)]},
        "builtin": {"generations": [_gen("gen-000", 0.4, 3, 1000), _gen("gen-001", 0.5, 70, 1000),
                                    _gen("gen-002", 0.6, 130, 1000)]}}}
    (tmp_path / "experiments" / "real_student.json").write_text(json.dumps(data))
    text = real_student.report(tmp_path)
    pairs = [line for line in text.splitlines() if line.startswith("| gen-00") and "min |" in line
             and line.count("|") == 6]
    assert pairs == ["| gen-000 | 67.0 min | 0.0000 | gen-000 (3.0 min) | 0.4000 |",
                     "| gen-001 | 120.0 min | 0.2500 | gen-001 (70.0 min) | 0.5000 |"]
    assert "| gen-001 | abc1234 | 40 x 16, prefix without gradients | 0.2500 |" in text
    assert "| gen-000 | abc1234 | 12 x 16 | 0.0000 |" in text


def test_no_measurement_says_how_to_make_one(tmp_path):
    assert "python -m experiments.real_student" in real_student.report(tmp_path)
