"""Stage `evaluate`: AST accuracy of this generation's student on the fixed held-out
evaluation set, overall, per skill and per kind of generalisation.

Reads data/<gen>/model, data/eval.parquet, data/tokenizer.json; writes
data/<gen>/metrics.json (DVC metrics), data/<gen>/skill_accuracy.csv (DVC plot) and
data/<gen>/predictions.parquet.
"""

from __future__ import annotations

import pandas as pd

from flywheel import layout, stage, store, student
from flywheel.config import Config
from flywheel.toolcall import calls as C
from flywheel.toolcall.catalog import SKILLS


def per_skill(skills: pd.Series, correct: pd.Series) -> dict[str, float]:
    exploded = pd.DataFrame({"skill": skills, "correct": correct}).explode("skill")
    means = exploded.groupby("skill")["correct"].mean()
    return {s: round(float(means[s]), 4) for s in SKILLS if s in means.index}


def main(cfg: Config, generation: str) -> None:
    ec = cfg.evaluate
    evals = store.read_table(layout.EVAL, store.EVALSET)
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(layout.path(generation, layout.MODEL))
    bar = stage.Progress("evaluate", "evaluation requests", len(evals))
    outputs = student.answer(model, codec, list(evals["request"]), batch_size=ec.batch_size,
                             max_new_tokens=ec.max_new_tokens, on_batch=bar.advance)
    bar.close()
    preds = C.score(evals, outputs)
    skills = per_skill(evals["skills"], preds["correct"])
    metrics = {
        "accuracy": round(float(preds["correct"].mean()), 4),
        "rows": len(preds),
        "per_split": {k: round(float(v), 4) for k, v in preds["correct"].groupby(evals["split"]).mean().items()},
        "per_skill": skills,
    }
    store.write_json(metrics, layout.path(generation, layout.METRICS))
    store.write_csv(pd.DataFrame({"skill": list(skills), "accuracy": list(skills.values())}),
                    layout.path(generation, layout.SKILL_ACCURACY))
    store.write_table(preds, layout.path(generation, layout.PREDICTIONS), store.PREDICTIONS)
    stage.log("evaluate", f"accuracy {metrics['accuracy']:.4f} {metrics['per_split']}")


if __name__ == "__main__":
    stage.run("evaluate", main)
