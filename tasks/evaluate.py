"""Stage `evaluate`: accuracy of this generation's student on the fixed held-out
evaluation set, overall, per skill and per split (kind of generalisation).

Scoring is the domain's (`toolcall`: AST match; `llm`: `domain.metric`, `exact` or
`json`); with the `judge` metric the judge committee decides whether each answer is
right, with the reference answer shown to it, through the same cached client layer.

Per split and composition factor (`Domain.factors`) the failure rate goes to
data/<gen>/factor_failures.json: what the `user` split's failures are made of, to set
against the dev split's (failure_profile.json). Nothing that generates training data
reads it.

Reads data/<gen>/model, data/eval.parquet; writes data/<gen>/metrics.json (DVC metrics),
data/<gen>/factor_failures.json,
data/<gen>/skill_accuracy.csv (DVC plot), data/<gen>/predictions.parquet and
data/<gen>/evaluate_calls.parquet.

With `evaluate.bfcl.categories`, the same student also answers a seeded sample of BFCL's
single-turn questions (flywheel/bfcl.py: its data, its tools, its checker), each with its
own turns and tools: per category accuracy and BFCL's two summaries go to metrics.json
(`bfcl`) and data/<gen>/bfcl_accuracy.csv (DVC plot; only its header when off).
"""

from __future__ import annotations

import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel.backends.session import Session
from flywheel.config import ConfigView
from flywheel.factor_rates import factor_failure_rates
from flywheel.student import student_answers
from flywheel.backends import templates
from flywheel.backends import committee
from flywheel.verdicts import LABEL_OK


def per_skill(skills: pd.Series, correct: pd.Series, order: list[str]) -> dict[str, float]:
    exploded = pd.DataFrame({"skill": skills, "correct": correct}).explode("skill")
    means = exploded.groupby("skill")["correct"].mean()
    return {s: round(float(means[s]), 4) for s in order if s in means.index}


def judge_scored(dom: domain.Domain, jc, session, evals: pd.DataFrame, outputs: list[str]) -> list[bool]:
    """Each student answer shown to the committee as the label, with the reference answer;
    `label_ok` by consensus counts as right, anything else (held out included) as wrong."""
    template = templates.load(dom.path / jc.template)
    rubric = templates.read_text(dom.path / jc.rubric)
    prompts = [committee.judge_prompt(template, request=r, label=o, student_output="", rubric=rubric, catalog=[],
                                      skills=dom.tag_choices(), reference=ref)
               for r, o, ref in zip(evals["request"], outputs, evals["label"])]
    decisions, _ = committee.ask_committee(session.committee(jc.committee), prompts, consensus=jc.consensus,
                                           canon=lambda v: None)
    return [d.verdict == LABEL_OK for d in decisions]


def bfcl_scores(student, bc, batch_size: int) -> dict:
    """The student on BFCL's questions: per category accuracy, BFCL's summaries."""
    import time

    from flywheel import bfcl
    from flywheel.stage import Progress

    start = time.monotonic()
    qs = bfcl.sample(list(bc.categories), bc.per_category, bc.seed)
    bar = Progress("evaluate", "BFCL questions", len(qs))
    answers = bfcl.answer(student, qs, batch_size=batch_size, max_new_tokens=bc.max_new_tokens, on_batch=bar.advance)
    bar.close()
    per = bfcl.scored(qs, answers)
    out = {"per_category": {c: round(r / n, 4) for c, (r, n) in per.items()},
           **{k: round(v, 4) for k, v in bfcl.summaries(per).items()},
           "questions": len(qs), "bfcl_eval": bfcl._bfcl().version}
    stage.log("evaluate", f"BFCL: {len(qs)} questions in {time.monotonic() - start:.0f}s {out['per_category']}")
    return out


def main(cfg: ConfigView, generation: str) -> None:
    ec = cfg.evaluate
    dom = domain.get(cfg.domain)
    evals = store.read_table(layout.EVAL, tables.EVALSET)
    student, outputs = student_answers("evaluate", layout.path(generation, layout.MODEL), list(evals["request"]),
                                       dom=dom, batch_size=ec.batch_size, max_new_tokens=ec.max_new_tokens,
                                       contexts=evals["context"])
    preds = pd.DataFrame({"id": evals["id"].to_numpy(), "output": outputs,
                          "correct": domain.score_rows(dom, list(evals["label"]), outputs, evals["context"])})
    with Session("evaluate", generation, cfg.judge.budget, **stage.model_call_env()) as session:
        if cfg.domain.metric == "judge":
            preds["correct"] = judge_scored(dom, cfg.judge, session, evals, outputs)
        session.finish()
    skills = per_skill(evals["skills"], preds["correct"], dom.skills(evals["skills"]))
    metrics = {
        "accuracy": round(float(preds["correct"].mean()), 4),
        "rows": len(preds),
        "per_split": {k: round(float(v), 4) for k, v in preds["correct"].groupby(evals["split"]).mean().items()},
        "per_skill": skills,
    }
    if ec.bfcl.categories:
        metrics["bfcl"] = bfcl_scores(student, ec.bfcl, ec.batch_size)
    store.write_json(metrics, layout.path(generation, layout.METRICS))
    per_category = metrics.get("bfcl", {}).get("per_category", {})
    store.write_csv(pd.DataFrame({"category": list(per_category), "accuracy": list(per_category.values())}),
                    layout.path(generation, layout.BFCL_ACCURACY))
    rows = pd.DataFrame({"factors": [dom.factors(r, label) for r, label in zip(evals["request"], evals["label"])],
                         "correct": preds["correct"].to_numpy()})
    store.write_json({split: factor_failure_rates(part) for split, part in rows.groupby(evals["split"].to_numpy())},
                     layout.path(generation, layout.FACTOR_FAILURES))
    store.write_csv(pd.DataFrame({"skill": list(skills), "accuracy": list(skills.values())}),
                    layout.path(generation, layout.SKILL_ACCURACY))
    store.write_table(preds, layout.path(generation, layout.PREDICTIONS), tables.PREDICTIONS)
    stage.log("evaluate", f"accuracy {metrics['accuracy']:.4f} {metrics['per_split']}")


if __name__ == "__main__":
    stage.run("evaluate", main)
