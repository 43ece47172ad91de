"""Stage `generate`: the teacher turns the previous generation's expansion plan into new
requests with candidate labels.

The domain writes the rows (flywheel/domain.py `generate`): `toolcall` draws a request per
plan row and has its embedded teacher or a teacher model label it; `llm` has the teacher
model write a new example of the plan row's skill from a reference example. Every new
request passes the validation gate (flywheel/gate.py): no repeat of the pool or of this
generation, no evaluation request. An answer that cannot be read keeps its raw text and
marks the row with an `error`; the judge drops it.

A plan row of kind `traffic` is a logged request (traffic.file), which the teacher
labels as it is: its row's `source` is `traffic`; generate.json then counts the rows
per source and the placeholders redaction left in the logged requests, per kind.

Reads data/<prev>/plan.parquet, data/<prev>/train.parquet, data/eval.parquet; writes
data/<gen>/generated.parquet (with each row's `factors`, Domain.factors, and the parent's
factors it `kept`), data/<gen>/truth.parquet (the true labels where the domain
knows them; only the judge's quality measurement reads it), data/<gen>/generate.json and
data/<gen>/generate_calls.parquet.
"""

from __future__ import annotations

import random

import numpy as np

from flywheel import domain, layout, redact, stage, store, tables
from flywheel.backends.session import Session
from flywheel.config import ConfigView
from flywheel.gate import Gate
from flywheel.backends import templates


def main(cfg: ConfigView, generation: str) -> None:
    gc = cfg.generate
    prev = cfg.generation(generation).prev
    dom = domain.get(cfg.domain)
    plan = store.read_table(layout.path(prev, layout.PLAN), tables.PLAN)
    domain.require_teacher(dom, gc.teacher, logged=bool((plan["kind"] == tables.TRAFFIC).any()))
    evals = store.read_table(layout.EVAL, tables.EVALSET)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "generate"))
    pool = store.read_table(layout.path(prev, layout.TRAIN), tables.TRAINSET)
    gate = Gate(set(evals["request"]), set(pool["request"]))
    report: dict = {"teacher": "embedded" if gc.teacher == "embedded" else gc.teacher.model}
    with Session("generate", generation, gc.budget, **stage.model_call_env()) as session:
        bar = None
        teacher = domain.Teacher(None, None)
        rubric = ""
        if gc.teacher != "embedded":
            writer = templates.load(dom.path / gc.writer) if dom.needs_writer else None
            teacher = domain.Teacher(session.client(gc.teacher, "generate.teacher"),
                                     templates.load(dom.path / gc.template), writer)
            if "rubric" in dom.teacher_variables:
                rubric = templates.read_text(dom.path / cfg.judge.rubric)
            bar = stage.Progress("generate", "teacher answers", len(plan))
        rows, truth = dom.generate(plan, pool, generation=generation, gate=gate, rng=rng, teacher=teacher, cfg=gc,
                                   rubric=rubric, bar=bar)
        if bar is not None:
            bar.close()
        calls = session.finish()
    true = dict(zip(truth["id"], truth["true_label"]))  # the composition is what the request was written from
    rows["factors"] = [dom.factors(r, true.get(i, label)) if r else []
                       for i, r, label in zip(rows["id"], rows["request"], rows["label"])]
    rows["kept"] = [list(k) if isinstance(k, (list, tuple, np.ndarray)) else [] for k in rows["kept"]]
    rows["kind"] = rows["kind"].fillna("")
    logged = rows["source"] == tables.TRAFFIC
    report |= {"rows": len(rows), "teacher_errors": int((rows["error"] != "").sum()), "gate_refused": gate.refused,
               "plan_kinds": plan["kind"].value_counts().sort_index().to_dict()}
    if logged.any():  # what redaction replaced in the requests sent out: counts per kind, never the values
        report["sources"] = rows["source"].value_counts().sort_index().to_dict()
        report["redacted"] = redact.placeholders(rows.loc[logged, "request"])
    store.write_table(rows, layout.path(generation, layout.GENERATED), tables.GENERATED)
    store.write_table(truth, layout.path(generation, layout.TRUTH), tables.TRUTH)
    store.write_json(report, layout.path(generation, layout.GENERATE_METRICS))
    stage.log("generate", f"{len(rows)} rows from {len(plan)} plan rows of {prev}; "
              f"{report['teacher_errors']} teacher errors; model calls {calls['calls']}, "
              f"cache hits {calls['cache_hits']}, tokens {calls['prompt_tokens'] + calls['completion_tokens']}, "
              f"{calls['seconds']}s")


if __name__ == "__main__":
    stage.run("generate", main)
