"""Where each stage's files live. `dvc.yaml` declares the same paths (a test checks it).

`data/seed/` plays generation -1: the seed set as the first training set, the first
expansion plan, and the untrained student, so every generation reads the same files
from its `prev`, the first one included.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
EVAL = DATA / "eval.parquet"
TOKENIZER = DATA / "tokenizer.json"
SEED = "seed"

GENERATED = "generated.parquet"  # teacher's requests and candidate labels
TRUTH = "truth.parquet"  # true labels: read only to measure the judge
VERDICTS = "verdicts.parquet"
JUDGE_METRICS = "judge.json"
TRAIN = "train.parquet"  # composed training set (for `seed`: the seed set)
MODEL = "model"  # student checkpoint directory (save_pretrained)
TRAIN_LOSS = "train_loss.csv"
METRICS = "metrics.json"
SKILL_ACCURACY = "skill_accuracy.csv"
PREDICTIONS = "predictions.parquet"
PROBE = "probe.parquet"
FAILURE_PROFILE = "failure_profile.json"
PLAN = "plan.parquet"


def gen_dir(generation: str) -> Path:
    return DATA / generation


def path(generation: str, name: str) -> Path:
    return gen_dir(generation) / name
