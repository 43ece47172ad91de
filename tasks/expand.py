"""Stage `expand`: the plan for the next generation's data, aimed where the student fails.

`expand.strategy` mixes four strategies with weights, sharing one `budget` of plan rows
(largest-remainder split; what a strategy cannot use goes to `random`):

- `error_driven`: `variations_per_failure` plan rows per failed probe row: same functions
  and skills, phrased anew with new values by the teacher; each keeps its parent
  failure's id. `failure_order` picks the failures: `hardest` (highest loss first) or
  `spread` (each combination of skills in turn, highest loss first within it), so a
  student that fails almost everything still gets every skill, not only the hardest.
- `skill_weighted`: pool rows re-sampled in proportion to the failure profile (a skill
  with twice the failures gets twice the rows), each varied by the teacher.
- `skill_synth`: new items for the weakest skills (the three highest failure rates) from
  reference items of that skill; `generate` keeps one only when the teacher gives the
  same label twice (self-consistency).
- `random`: the budget spread uniformly over the skills, the baseline.
Every row the teacher then makes passes `generate`'s validation gate (schema, no
duplicate of the pool, no evaluation request) before it counts.

Reads data/<gen>/probe.parquet, data/<gen>/train.parquet, data/<gen>/dev.parquet;
writes data/<gen>/plan.parquet, which the next generation's `generate` reads.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import domain, layout, stage, store
from flywheel.config import STRATEGIES, ConfigView, ExpandConfig

WEAKEST = 3  # skills skill_synth writes for


def quotas(weights: dict[str, float], budget: int) -> dict[str, int]:
    """Integer shares of `budget` proportional to `weights` (largest remainder)."""
    total = sum(weights.values())
    raw = {k: budget * w / total for k, w in weights.items() if w > 0}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[: budget - sum(out.values())]:
        out[k] += 1
    return out


def plan(probe: pd.DataFrame, pool: pd.DataFrame, cfg: ExpandConfig, rng: random.Random, generation: str, *,
         dom: domain.Domain, skills: list[str] | None = None) -> pd.DataFrame:
    """`pool`: rows with labels (training pool and dev); `skills`: what `random` spreads over
    (default: the domain's, with any others the pool carries)."""
    skills = skills if skills is not None else dom.skills(pool["skills"])
    q = quotas({s: cfg.strategy.get(s, 0.0) for s in STRATEGIES}, cfg.budget)
    labels = pool.set_index("id")["label"]
    failures = probe[~probe["correct"]].sort_values(["loss", "id"], ascending=[False, True])
    if cfg.failure_order == "spread":
        combo = failures["skills"].map(lambda s: ",".join(sorted(s)))
        turn = combo.groupby(combo).cumcount()  # 0 for each combination's hardest failure, 1 for the next ...
        failures = failures.assign(_turn=turn.to_numpy(), _combo=combo.to_numpy()) \
            .sort_values(["_turn", "_combo"], kind="stable")
    rows: list[dict] = []

    def add(kind: str, parent, functions, row_skills) -> None:
        rows.append({"parent_id": parent, "functions": list(functions), "skills": list(row_skills), "kind": kind})

    # error_driven: variations of each failure
    n = 0
    for f in failures.itertuples(index=False):
        for _ in range(cfg.variations_per_failure):
            if n < q.get("error_driven", 0):
                add("error_driven", f.id, dom.functions(labels[f.id]), f.skills)
                n += 1
    # skill_weighted and skill_synth: by the failure profile
    ex = probe[["skills", "correct"]].explode("skills")
    failed_by_skill = (~ex["correct"]).groupby(ex["skills"]).sum()
    rate = (~ex["correct"]).groupby(ex["skills"]).mean()
    by_skill: dict[str, list[int]] = {}
    for i, row_skills in enumerate(pool["skills"]):
        for s in row_skills:
            by_skill.setdefault(s, []).append(i)
    need = {s: float(c) for s, c in failed_by_skill.items() if c > 0 and s in by_skill}
    weakest = {s: float(rate[s]) for s in sorted(need, key=lambda s: (-rate[s], s))[:WEAKEST]}
    for kind, weights in (("skill_weighted", need), ("skill_synth", weakest)):
        if not weights or not q.get(kind):
            continue
        for skill, k in quotas(weights, q[kind]).items():
            for _ in range(k):
                ref = pool.iloc[rng.choice(by_skill[skill])]
                add(kind, ref["id"], dom.functions(ref["label"]), ref["skills"])
    # random: the rest, uniformly over the skills
    for i in range(cfg.budget - len(rows)):
        add("random", None, *dom.random_spec(rng, skills[i % len(skills)]))
    out = pd.DataFrame(rows, columns=["parent_id", "functions", "skills", "kind"])
    out.insert(0, "plan_id", [store.row_id(generation, "plan", str(i)) for i in range(len(out))])
    return out


def main(cfg: ConfigView, generation: str) -> None:
    probe = store.read_table(layout.path(generation, layout.PROBE), store.PROBE)
    train = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    dev = store.read_table(layout.path(generation, layout.DEV), store.TRAINSET)
    pool = pd.concat([train, dev], ignore_index=True)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "expand"))
    out = plan(probe, pool, cfg.expand, rng, generation, dom=domain.get(cfg.domain))
    store.write_table(out, layout.path(generation, layout.PLAN), store.PLAN)
    stage.log("expand", f"{len(out)} plan rows {out['kind'].value_counts().to_dict()}")


if __name__ == "__main__":
    stage.run("expand", main)
