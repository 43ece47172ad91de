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

from flywheel import domain, layout, stage, store
from flywheel import student as S
from flywheel.config import ConfigView


def first_plan(seed: pd.DataFrame, n: int, dom: domain.Domain, rng: random.Random) -> pd.DataFrame:
    """Generation 0 asks for variations of the seed rows, round robin; without seed rows,
    for random rows over the domain's skills."""
    rows = []
    skills = dom.skills()
    for i in range(n):
        plan_id = store.row_id("seed-plan", str(i))
        if seed.empty:
            rows.append(store.plan_row(plan_id, None, *dom.random_spec(rng, skills[i % len(skills)]), "random"))
            continue
        parent = seed.iloc[i % len(seed)]
        rows.append(store.plan_row(plan_id, parent["id"], dom.functions(parent["label"]), parent["skills"],
                                   "seed_variation"))
    return pd.DataFrame(rows, columns=store.PLAN.names)


def main(cfg: ConfigView, _: str) -> None:
    pc = cfg.prepare
    rng = random.Random(stage.stage_seed(cfg.seed, layout.SEED, "prepare"))
    dom = domain.get(cfg.domain)
    try:
        kind = S.kind_for(cfg.student)
        kind.check(cfg.student, dom)  # a student of your own that cannot be one stops here, before any work
    except S.StudentError as e:
        raise store.DataError(f"params.yaml: {e}") from None
    made = dom.prepare(rng, pc)
    plan = first_plan(made.seed, pc.plan_rows, dom, rng)
    logged = dom.traffic_plan(0, made.evals, cfg.seed)  # generation 0's slice of the traffic, if any
    if len(logged):
        plan = pd.concat([logged, plan], ignore_index=True)
    store.write_table(made.evals, layout.EVAL, store.EVALSET)
    store.write_table(made.seed, layout.path(layout.SEED, layout.TRAIN), store.TRAINSET)
    store.write_table(plan, layout.path(layout.SEED, layout.PLAN), store.PLAN)
    store.write_table(pd.DataFrame(columns=store.PROBE.names), layout.path(layout.SEED, layout.PROBE), store.PROBE)
    with store.atomic_dir(layout.path(layout.SEED, layout.MODEL)) as tmp:
        who = kind.make(tmp, dom=dom, tokenizer=made.tokenizer, prepare=pc, student=cfg.student,
                        seed=stage.stage_seed(cfg.seed, layout.SEED, "model"))
    stage.log("prepare", f"eval {len(made.evals)} rows {made.evals['split'].value_counts().to_dict()}, seed "
              f"{len(made.seed)} rows, plan {len(plan)} rows, {who}")


if __name__ == "__main__":
    stage.run("prepare", main, per_generation=False)
