"""Where each stage's files live. `dvc.yaml` declares the same paths (a test checks it).

`data/seed/` plays generation -1: the seed set as the first training set, the first
expansion plan, and the untrained student, so every generation reads the same files
from its `prev`, the first one included.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
EVAL = DATA / "eval.parquet"
LOGS = Path("logs")  # request logs (traffic.file): a dependency of prepare and expand only
LLM_CACHE = Path(".llm-cache") / "responses.sqlite"  # project-wide; each stage's slice is its *_calls.parquet
SEED = "seed"
STAGES = ("generate", "judge", "compose", "train", "evaluate", "probe", "expand")  # one generation, in order

GENERATED = "generated.parquet"  # teacher's requests and candidate labels
TRUTH = "truth.parquet"  # true labels: read only to measure the judge
VERDICTS = "verdicts.parquet"
JUDGE_METRICS = "judge.json"
TRAIN = "train.parquet"  # composed training set (for `seed`: the seed set)
DEV = "dev.parquet"  # new rows held out of training, for the probe
MODEL = "model"  # student checkpoint directory (save_pretrained)
TRAIN_LOSS = "train_loss.csv"
METRICS = "metrics.json"
SKILL_ACCURACY = "skill_accuracy.csv"
BFCL_ACCURACY = "bfcl_accuracy.csv"
PREDICTIONS = "predictions.parquet"
PROBE = "probe.parquet"
FAILURE_PROFILE = "failure_profile.json"
FACTOR_FAILURES = "factor_failures.json"  # evaluate: failure rate per factor and split (never read by expand)
PLAN = "plan.parquet"
GENERATE_METRICS = "generate.json"
GENERATE_CALLS = "generate_calls.parquet"  # the teacher answers this generation used
JUDGE_CALLS = "judge_calls.parquet"  # the judge answers this generation used
EVALUATE_CALLS = "evaluate_calls.parquet"  # judge-scored metric only
CALLS = {"generate": GENERATE_CALLS, "judge": JUDGE_CALLS, "evaluate": EVALUATE_CALLS}  # per stage that asks a model


def gen_dir(generation: str) -> Path:
    return DATA / generation


def path(generation: str, name: str) -> Path:
    return gen_dir(generation) / name


def llm_report(generation: str, stage: str) -> Path:
    """A stage run's model-call numbers (not DVC-tracked: they differ on a cached rerun)."""
    return LLM_CACHE.parent / "reports" / generation / f"{stage}.json"
