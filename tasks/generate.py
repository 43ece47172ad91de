"""Stage `generate`: the teacher turns the previous generation's expansion plan into new
requests with candidate labels.

Reads data/<prev>/plan.parquet and data/eval.parquet (so no request equals an evaluation
request); writes data/<gen>/generated.parquet and, apart from the training path,
data/<gen>/truth.parquet, which only the judge's quality measurement reads.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import layout, stage, store
from flywheel.config import Config
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall import teacher
from flywheel.toolcall.catalog import FUNCTIONS, PHENOMENA

TRIES = 20  # redraws per plan row before giving up on a fresh request


def _spec(functions: list[str], skills: list[str]) -> P.Spec:
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        raise store.DataError(f"plan: unknown function {unknown[0]!r}")
    return P.Spec(tuple(functions), frozenset(s for s in skills if s in PHENOMENA))


def generate(rng: random.Random, plan: pd.DataFrame, generation: str, *, exclude: set[str],
             error_rate: float, skill_error_rates: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, truth = [], []
    seen = set(exclude)
    for plan_row in plan.itertuples(index=False):
        spec = _spec(list(plan_row.functions), list(plan_row.skills))
        for _ in range(TRIES):
            req = P.make_request(rng, spec)
            if req.text not in seen:
                break
        else:
            continue  # the plan asked for more than the phrasing space holds; skip, don't repeat
        seen.add(req.text)
        candidate, true, kind = teacher.label(rng, req, skill_error_rates, error_rate)
        label = C.dumps(candidate)
        rid = store.row_id(req.text, label)
        rows.append({"id": rid, "generation": generation, "source": "synthetic", "parent_id": plan_row.parent_id,
                     "skills": list(req.skills), "teacher": "embedded", "request": req.text, "label": label})
        truth.append({"id": rid, "true_label": C.dumps(true), "error_kind": kind})
    return pd.DataFrame(rows, columns=store.GENERATED.names), pd.DataFrame(truth, columns=store.TRUTH.names)


def main(cfg: Config, generation: str) -> None:
    prev = cfg.generation(generation).prev
    plan = store.read_table(layout.path(prev, layout.PLAN), store.PLAN)
    evals = store.read_table(layout.EVAL, store.EVALSET)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "generate"))
    rows, truth = generate(rng, plan, generation, exclude=set(evals["request"]),
                           error_rate=cfg.generate.error_rate, skill_error_rates=cfg.generate.skill_error_rates)
    store.write_table(rows, layout.path(generation, layout.GENERATED), store.GENERATED)
    store.write_table(truth, layout.path(generation, layout.TRUTH), store.TRUTH)
    stage.log("generate", f"{len(rows)} requests from {len(plan)} plan rows of {prev}")


if __name__ == "__main__":
    stage.run("generate", main)
