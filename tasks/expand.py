"""Stage `expand`: the plan for the next generation's data, aimed where the student fails.

`expand.strategy` mixes six strategies with weights, sharing one `budget` of plan rows
(largest-remainder split; what a strategy cannot use goes to `random`):

- `error_driven`: `variations_per_failure` plan rows per target row, phrased anew with new
  values by the teacher; each keeps its parent's id and carries the failure: the parent's
  request, the student's answer, the verified label and, with `keep_factors`, the
  parent's blamed factors (those whose dev failure rate stands out), which the child
  keeps while the rest is drawn afresh. The targets (`targets`) are the
  greedy failures, or the `learnable` rows: those the student got right in some but not
  all of `probe.samples` sampled answers. `failure_order` picks among them: `hardest`
  (highest loss first) or `spread` (each combination of skills in turn, highest loss
  first within it); `group_cap` caps the share of the rows one combination may take. A
  child keeps its parent's functions and skills, or, with `vary_functions`, draws a new
  function combination for one of its parent's skills. With `allocate: progress` the
  rows are split across failure clusters (skill combinations) by the learning progress
  the last plan's rows bought there (`progress`, `allocate`).
- `borderline`: the same for the probe's right-but-unsure rows (category `borderline`).
- `skill_weighted`: pool rows re-sampled in proportion to the failure profile (a skill
  with twice the failures gets twice the rows), each varied by the teacher.
- `skill_synth`: new items for the weakest skills (the three highest failure rates) from
  reference items of that skill; `generate` keeps one only when the teacher gives the
  same label twice (self-consistency).
- `random`: the budget spread uniformly over the skills, the baseline.
- `static`: variations of the seed rows, round robin, as generation 0's plan is: the
  first plan's distribution again, whatever the probe found (the no-loop baseline).

`broad_above` is broad data first: while more than that share of the probe's dev rows
fail, the targeted strategies' shares go to `random`.
Every row the teacher then makes passes `generate`'s validation gate (schema, no
duplicate of the pool, no evaluation request) before it counts.

With `traffic.file`, the plan also holds the next generation's slice of the logged
requests (kind `traffic`, flywheel/toolcall/traffic.py), outside the budget.

Reads data/<gen>/probe.parquet, data/<gen>/train.parquet, data/<gen>/dev.parquet,
data/eval.parquet (traffic only) and, for `allocate: progress`, data/<prev>/probe.parquet
and data/<prev>/plan.parquet; writes data/<gen>/plan.parquet, which the next
generation's `generate` reads.
"""

from __future__ import annotations

import math
import random

import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel.config import ConfigView, ExpandConfig
from flywheel.tables import (BORDERLINE, BORDERLINE_KIND, ERROR_DRIVEN, RANDOM, SKILL_SYNTH, SKILL_WEIGHTED, STATIC,
                             STRATEGIES, TARGETED)
from flywheel.factor_rates import factor_failure_rates

WEAKEST = 3  # skills skill_synth writes for


def quotas(weights: dict[str, float], budget: int) -> dict[str, int]:
    """Integer shares of `budget` proportional to `weights` (largest remainder)."""
    total = sum(weights.values())
    raw = {k: budget * w / total for k, w in weights.items() if w > 0}
    out = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (-(raw[k] - out[k]), k))[: budget - sum(out.values())]:
        out[k] += 1
    return out


def targets(probe: pd.DataFrame, cfg: ExpandConfig) -> pd.DataFrame:
    """The rows error_driven varies, in the order it takes them."""
    if cfg.targets == "learnable":
        if len(probe) and not (probe["samples"] > 0).any():
            raise store.DataError("expand.targets learnable: the probe drew no samples; set probe.samples > 0")
        picked = probe[(probe["success_rate"] > 0) & (probe["success_rate"] < 1)]
    else:
        picked = probe[~probe["correct"]]
    picked = picked.sort_values(["loss", "id"], ascending=[False, True])
    if cfg.failure_order == "spread":
        combo = picked["skills"].map(lambda s: ",".join(sorted(s)))
        turn = combo.groupby(combo).cumcount()  # 0 for each combination's hardest row, 1 for the next ...
        picked = picked.assign(_turn=turn.to_numpy(), _combo=combo.to_numpy()) \
            .sort_values(["_turn", "_combo"], kind="stable")
    return picked


def blamed_factors(probe: pd.DataFrame) -> set[str]:
    """The factors whose dev failure rate stands out (flywheel/factor_rates.py), which a child
    of a target keeps. `calls:*` is left out: the child's functions fix it already."""
    profile = factor_failure_rates(probe[probe["split"] == "dev"])
    return {f for f, v in profile.items() if v["stands_out"] and not f.startswith("calls:")}


def combo(skills) -> tuple[str, ...]:
    """A failure cluster: the combination of skills a row shows."""
    return tuple(sorted(skills))


def dev_accuracy(probe: pd.DataFrame, min_rows: int) -> dict[tuple[str, ...], float]:
    dev = probe[probe["split"] == "dev"]
    by = dev.groupby(dev["skills"].map(combo))["correct"]
    return {c: float(acc) for c, acc, n in zip(by.mean().index, by.mean(), by.size()) if n >= min_rows}


def progress(before: pd.DataFrame, after: pd.DataFrame, spent: pd.DataFrame, *, min_rows: int = 20) -> dict:
    """Per cluster the last plan spent targeted rows on: its dev accuracy in the probe
    before those rows (`before`, the previous generation's) and after (`after`), and the
    absolute learning progress per row spent, |after - before| / rows (None where a side
    saw fewer than `min_rows` dev rows of it)."""
    rows = spent[spent["kind"].isin((ERROR_DRIVEN, BORDERLINE_KIND))]["skills"].map(combo).value_counts()
    a, b = dev_accuracy(before, min_rows), dev_accuracy(after, min_rows)
    return {c: {"rows": int(n), "before": a.get(c), "after": b.get(c),
                "per_row": abs(b[c] - a[c]) / n if c in a and c in b else None} for c, n in rows.items()}


def allocate(parents: pd.DataFrame, quota: int, per_parent: int, lp: dict) -> dict[tuple[str, ...], int]:
    """`quota` rows over the parents' clusters in proportion to their learning progress per
    row (a cluster not measured yet counts as the mean of those that are, so it gets tried;
    one that did not move after rows were spent on it gets few), none beyond what its
    parents can take (`per_parent` each); what a full cluster cannot take goes to the rest."""
    room = parents["skills"].map(combo).value_counts().mul(per_parent).to_dict()
    known = [v["per_row"] for v in lp.values() if v["per_row"] is not None]
    default = sum(known) / len(known) if known else 1.0
    weight = {c: (lp[c]["per_row"] if c in lp and lp[c]["per_row"] is not None else default) for c in room}
    if sum(weight.values()) <= 0:
        weight = dict.fromkeys(room, 1.0)
    out = dict.fromkeys(room, 0)
    left = min(quota, sum(room.values()))
    while left > 0:
        open_ = {c: w for c, w in weight.items() if out[c] < room[c]}
        if sum(open_.values()) <= 0:
            open_ = {c: 1.0 for c in open_}
        share = quotas(open_, left)
        for c, k in share.items():
            out[c] += min(k, room[c] - out[c])
        left = min(quota, sum(room.values())) - sum(out.values())
    return out


def variants(parents: pd.DataFrame, labels: pd.Series, cfg: ExpandConfig, rng: random.Random, quota: int,
             dom: domain.Domain, blamed: set[str], kind: str,
             caps: dict[tuple[str, ...], int] | None = None) -> list[dict]:
    """Up to `quota` plan rows, `variations_per_failure` per parent in order: the parent's
    request, the student's answer and the verified label travel with each, and, with
    `keep_factors`, the parent's blamed factors, which the child must show too. `caps`:
    rows per cluster (else `group_cap` of the quota for each)."""
    cap = math.ceil(cfg.group_cap * quota)
    per_combo: dict[tuple[str, ...], int] = {}
    out: list[dict] = []
    for f in parents.itertuples(index=False):
        group = combo(f.skills)
        keep = sorted(set(f.factors) & blamed) if cfg.keep_factors else []
        for _ in range(cfg.variations_per_failure):
            if len(out) >= quota or per_combo.get(group, 0) >= (caps.get(group, 0) if caps is not None else cap):
                break
            per_combo[group] = per_combo.get(group, 0) + 1
            if cfg.vary_functions and len(f.skills):
                functions, spec_skills = dom.random_spec(rng, rng.choice(sorted(f.skills)))
            else:
                functions, spec_skills = dom.functions(labels[f.id]), list(f.skills)
            out.append(tables.plan_row(f.id, functions, spec_skills, kind, keep=keep,
                                      parent_request=f.request, parent_output=f.output,
                                      parent_label=labels[f.id]))
        if len(out) >= quota:
            break
    return out


def plan(probe: pd.DataFrame, pool: pd.DataFrame, cfg: ExpandConfig, rng: random.Random, *,
         dom: domain.Domain, skills: list[str] | None = None, lp: dict | None = None) -> list[dict]:
    """`pool`: rows with labels (training pool and dev); `skills`: what `random` spreads over
    (default: the domain's, with any others the pool carries); `lp`: the learning progress
    per cluster (`progress`), which `allocate: progress` splits error_driven's share by."""
    skills = skills if skills is not None else dom.skills(pool["skills"])
    shares = {s: cfg.strategy.get(s, 0.0) for s in STRATEGIES}
    dev = probe[probe["split"] == "dev"] if cfg.broad_above < 1 else probe.iloc[:0]
    if len(dev) and float((~dev["correct"]).mean()) > cfg.broad_above:
        for s in TARGETED:  # most rows fail: aiming at failures would aim at nearly everything
            shares[RANDOM] += shares.pop(s)
    q = quotas(shares, cfg.budget)
    by_id = pool.set_index("id")
    labels = by_id["label"]
    rows: list[dict] = []

    def add(kind: str, parent, functions, row_skills) -> None:
        rows.append(tables.plan_row(parent, functions, row_skills, kind))

    if q.get(ERROR_DRIVEN) or q.get(BORDERLINE_KIND):
        blamed = blamed_factors(probe)
        probe = probe.assign(request=probe["id"].map(by_id["request"]))
        failed = targets(probe, cfg)
        caps = allocate(failed, q.get(ERROR_DRIVEN, 0), cfg.variations_per_failure, lp or {}) \
            if cfg.allocate == "progress" else None
        rows += variants(failed, labels, cfg, rng, q.get(ERROR_DRIVEN, 0), dom, blamed, ERROR_DRIVEN, caps)
        unsure = probe[probe["category"] == BORDERLINE].sort_values(["loss", "id"], ascending=[False, True])
        rows += variants(unsure, labels, cfg, rng, q.get(BORDERLINE_KIND, 0), dom, blamed, BORDERLINE_KIND)
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
    for kind, weights in ((SKILL_WEIGHTED, need), (SKILL_SYNTH, weakest)):
        if not weights or not q.get(kind):
            continue
        for skill, k in quotas(weights, q[kind]).items():
            for _ in range(k):
                ref = pool.iloc[rng.choice(by_skill[skill])]
                add(kind, ref["id"], dom.functions(ref["label"]), ref["skills"])
    if q.get(STATIC):
        seed = pool[pool["generation"] == layout.SEED].sort_values("id")
        if seed.empty:
            raise store.DataError("expand.strategy static: the training pool holds no seed rows to vary "
                                  "(compose.policy replace drops them; use accumulate)")
        for i in range(q[STATIC]):
            ref = seed.iloc[i % len(seed)]
            add(STATIC, ref["id"], dom.functions(ref["label"]), ref["skills"])
    # random: the rest, uniformly over the skills
    for i in range(cfg.budget - len(rows)):
        add(RANDOM, None, *dom.random_spec(rng, skills[i % len(skills)]))
    return rows


def main(cfg: ConfigView, generation: str) -> None:
    probe = store.read_table(layout.path(generation, layout.PROBE), tables.PROBE)
    train = store.read_table(layout.path(generation, layout.TRAIN), tables.TRAINSET)
    dev = store.read_table(layout.path(generation, layout.DEV), tables.TRAINSET)
    pool = pd.concat([train, dev], ignore_index=True)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "expand"))
    lp = None
    if cfg.expand.allocate == "progress":
        prev = cfg.generation(generation).prev
        lp = progress(store.read_table(layout.path(prev, layout.PROBE), tables.PROBE), probe,
                      store.read_table(layout.path(prev, layout.PLAN), tables.PLAN))
        moved = sorted(((v["per_row"], ",".join(c)) for c, v in lp.items() if v["per_row"] is not None), reverse=True)
        stage.log("expand", f"learning progress per row spent, {len(moved)} clusters measured: "
                  + ", ".join(f"{c} {x:.2e}" for x, c in moved[:5]))
    dom = domain.get(cfg.domain)
    # the next generation's slice of the traffic (if any), then the strategies' rows
    logged = dom.traffic_plan(cfg.traffic, cfg.index(generation) + 1, store.read_table(layout.EVAL, tables.EVALSET),
                              cfg.seed)
    out = tables.plan_table(logged + plan(probe, pool, cfg.expand, rng, dom=dom, lp=lp), generation)
    store.write_table(out, layout.path(generation, layout.PLAN), tables.PLAN)
    stage.log("expand", f"{len(out)} plan rows {out['kind'].value_counts().to_dict()}")


if __name__ == "__main__":
    stage.run("expand", main)
