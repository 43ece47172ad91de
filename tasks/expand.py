"""Stage `expand`: the plan for the next generation's data, aimed at the failures.

Each failing training row (hardest first, by loss) gets `variations_per_failure` plan
rows: same functions and skills, to be phrased anew with new values by the teacher, each
keeping the id of the failure it came from. `explore_share` of the budget, and whatever
the failures leave unused, is spread uniformly over all skills so the loop keeps
exploring. Reads data/<gen>/probe.parquet and data/<gen>/train.parquet; writes
data/<gen>/plan.parquet, which the next generation's `generate` reads.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import domain, layout, stage, store
from flywheel.config import Config, ExpandConfig
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall.catalog import SKILLS


def plan(probe: pd.DataFrame, train: pd.DataFrame, cfg: ExpandConfig, rng: random.Random,
         generation: str, *, llm_skills: list[str] | None = None) -> pd.DataFrame:
    """`llm_skills`: the llm domain's skills (plan rows then name no functions)."""
    failures = probe[~probe["correct"]].merge(train[["id", "label"]], on="id", how="left", validate="one_to_one")
    failures = failures.sort_values(["loss", "id"], ascending=[False, True])
    targeted = int(cfg.budget * (1 - cfg.explore_share))
    rows = []
    for failure in failures.itertuples(index=False):
        for _ in range(cfg.variations_per_failure):
            if len(rows) >= targeted:
                break
            fns = [c["name"] for c in C.loads(failure.label)] if llm_skills is None else []
            rows.append({"parent_id": failure.id, "functions": fns, "skills": list(failure.skills),
                         "kind": "failure_variation"})
    while llm_skills is not None and len(rows) < cfg.budget:
        rows.append({"parent_id": None, "functions": [], "skills": [llm_skills[len(rows) % len(llm_skills)]],
                     "kind": "explore"})
    while len(rows) < cfg.budget:
        spec = P.spec_for_skill(rng, SKILLS[len(rows) % len(SKILLS)])
        rows.append({"parent_id": None, "functions": list(spec.functions), "skills": sorted(spec.phenomena),
                     "kind": "explore"})
    out = pd.DataFrame(rows, columns=["parent_id", "functions", "skills", "kind"])
    out.insert(0, "plan_id", [store.row_id(generation, "plan", str(i)) for i in range(len(out))])
    return out


def main(cfg: Config, generation: str) -> None:
    probe = store.read_table(layout.path(generation, layout.PROBE), store.PROBE)
    train = store.read_table(layout.path(generation, layout.TRAIN), store.TRAINSET)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "expand"))
    llm_skills = None
    if cfg.domain.name == "llm":
        llm_skills = domain.skills(cfg.domain, train["skills"])
    out = plan(probe, train, cfg.expand, rng, generation, llm_skills=llm_skills)
    store.write_table(out, layout.path(generation, layout.PLAN), store.PLAN)
    stage.log("expand", f"{len(out)} plan rows {out['kind'].value_counts().to_dict()}")


if __name__ == "__main__":
    stage.run("expand", main)
