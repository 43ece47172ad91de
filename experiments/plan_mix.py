"""What the closed loop would plan from a finished run: each generation's probe expanded with
experiments/loop.py's `full` mix (error_driven 0.45 + borderline 0.25 + random 0.3), counted by
strategy, with the blamed factors, how many children the embedded teacher's draws gave
every factor they were to keep, and the embedded teacher's label-error rate on the rows
drawn for each strategy (its error model applied to their skills). Reads the run's data/ (a `make run` or `dvc repro`
first); writes nothing but the report.

    python -m experiments.plan_mix [--out experiments/plan_mix.json]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys

import pandas as pd

from bench import ROOT, commit, cpu_model
from experiments.loop import FULL
from flywheel import domain, layout, store, tables
from flywheel.config import load
from flywheel.gate import Gate
from flywheel.toolcall import label_noise, teacher
from tasks.expand import blamed_factors, plan


def measure(generation: str, cfg, dom) -> dict:
    probe = store.read_table(layout.path(generation, layout.PROBE), tables.PROBE)
    pool = pd.concat([store.read_table(layout.path(generation, layout.TRAIN), tables.TRAINSET),
                      store.read_table(layout.path(generation, layout.DEV), tables.TRAINSET)], ignore_index=True)
    ec = cfg.expand.model_copy(update=FULL["expand"])
    planned = tables.plan_table(plan(probe, pool, ec, random.Random(0), dom=dom), generation)
    aimed = planned[planned["kind"].isin(["error_driven", "borderline"])]
    drawn = teacher.draw(random.Random(1), planned, Gate(set(), set(pool["request"])))
    asked = [(row, kept) for row, _, kept in drawn if len(row.keep)]
    gc = cfg.generate
    wrong: dict[str, list[float]] = collections.defaultdict(list)  # the embedded teacher's error rate per row
    for row, req, _ in drawn:
        wrong[row.kind].append(label_noise.error_rate(req.skills, gc.skill_error_rates, gc.error_rate))
    return {"plan_rows": planned["kind"].value_counts().to_dict(), "blamed": sorted(blamed_factors(probe)),
            "teacher_error_rate": {k: round(sum(v) / len(v), 4) for k, v in sorted(wrong.items())},
            "rows_with_keep": int((aimed["keep"].map(len) > 0).sum()), "drawn": len(drawn),
            "drawn_with_keep": len(asked), "kept_every_factor": sum(len(k) == len(r.keep) for r, k in asked),
            "kept": dict(collections.Counter(f for _, k in asked for f in k).most_common())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "plan_mix.json"))
    args = ap.parse_args(argv)
    cfg = load()
    dom = domain.get(cfg.domain)
    report = {"commit": commit(), "cpu": cpu_model(), "mix": FULL["expand"]["strategy"],
              "generations": {g: measure(g, cfg, dom) for g in cfg.generations}}
    store.write_json(report, args.out)
    for g, r in report["generations"].items():
        print(g, r["plan_rows"], f"kept every factor {r['kept_every_factor']}/{r['drawn_with_keep']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
