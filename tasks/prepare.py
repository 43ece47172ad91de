"""Stage `prepare` (once, before generation 0): the evaluation set, the seed set, the first
expansion plan and the untrained student (with its tokenizer). The domain makes the sets
and the tokenizer (`toolcall` draws them from its generator; `llm` reads the user's files
under `domain.path`).

Outputs: data/eval.parquet, and data/seed/ (train.parquet, plan.parquet, an empty
probe.parquet, model/), which generation 0 reads as its `prev`.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel import student
from flywheel.config import ConfigView


def first_plan(seed: pd.DataFrame, n: int, dom: domain.Domain, rng: random.Random) -> list[dict]:
    """Generation 0 asks for variations of the seed rows, round robin; without seed rows,
    for random rows over the domain's skills."""
    rows = []
    skills = dom.skills()
    for i in range(n):
        if seed.empty:
            rows.append(tables.plan_row(None, *dom.random_spec(rng, skills[i % len(skills)]), tables.RANDOM))
            continue
        parent = seed.iloc[i % len(seed)]
        rows.append(tables.plan_row(parent["id"], dom.functions(parent["label"]), parent["skills"],
                                    tables.SEED_VARIATION))
    return rows


def main(cfg: ConfigView, _: str) -> None:
    pc = cfg.prepare
    rng = random.Random(stage.stage_seed(cfg.seed, layout.SEED, "prepare"))
    dom = domain.get(cfg.domain)
    try:
        kind = student.kind_for(cfg.student)
        kind.check(cfg.student, dom)  # a student of your own that cannot be one stops here, before any work
    except student.StudentError as e:
        raise store.DataError(f"params.yaml: {e}") from None
    made = dom.prepare(rng, pc, cfg.traffic)
    # generation 0's slice of the traffic (if any), then variations of the seed rows
    plan = tables.plan_table(dom.traffic_plan(cfg.traffic, 0, made.evals, cfg.seed) + first_plan(made.seed, pc.plan_rows, dom, rng),
                             layout.SEED)
    store.write_table(made.evals, layout.EVAL, tables.EVALSET)
    store.write_table(made.seed, layout.path(layout.SEED, layout.TRAIN), tables.TRAINSET)
    store.write_table(plan, layout.path(layout.SEED, layout.PLAN), tables.PLAN)
    store.write_table(tables.frame([], tables.PROBE), layout.path(layout.SEED, layout.PROBE), tables.PROBE)
    with store.atomic_dir(layout.path(layout.SEED, layout.MODEL)) as tmp:
        who = kind.make(tmp, dom=dom, tokenizer=made.tokenizer, prepare=pc, student=cfg.student,
                        seed=stage.stage_seed(cfg.seed, layout.SEED, "model"))
    stage.log("prepare", f"eval {len(made.evals)} rows {made.evals['split'].value_counts().to_dict()}, seed "
              f"{len(made.seed)} rows, plan {len(plan)} rows, {who}")


if __name__ == "__main__":
    stage.run("prepare", main, per_generation=False)
