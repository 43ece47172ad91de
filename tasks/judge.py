"""Stage `judge`: a verdict for every candidate label of this generation.

Cheap deterministic checks first, the LLM committee only where they cannot decide (as
LoopTool's label verification does). The domain gives the first verdicts from its own
checks and the current student's answers (none from the untrained built-in student
generation 0 starts from; `toolcall`: the verifier cascade, conclusive
when a label passes every check and the student agrees, or fails a check and the
verifier repairs it; `llm`: no checks, every readable label waits) and says which rows
stay undecided. Those go to the committee, when there is one. A correction from the
committee counts only if the domain's checks accept it; a label that failed a check is
never kept. With `judge.verify: false` there are no checks and no committee: every
readable label is kept as the teacher gave it (the no-judge baseline). Rows the committee does not agree on (`no_consensus`) or cannot answer
(`judge_error`) are held out of training. With `judge.calibration.gold`, the committee is
first measured on gold-labelled rows and refused below the configured precision or recall.

Reads data/<gen>/generated.parquet, data/<prev>/model; writes data/<gen>/verdicts.parquet,
data/<gen>/judge.json, data/<gen>/judge_calls.parquet. data/<gen>/truth.parquet is read
only after every verdict is final, to measure the judge's precision and recall.
"""

from __future__ import annotations

import pandas as pd

from flywheel import domain, layout, stage, store, tables
from flywheel import student
from flywheel.backends.session import Session
from flywheel.config import ConfigView
from flywheel.tables import TARGETED
from flywheel.student import student_answers
from flywheel.backends import LLMError, templates
from flywheel.backends import committee
from flywheel.verdicts import LABEL_OK, MODEL_WRONG, TEACHER_ERROR, WRONG


def calibrate(dom: domain.Domain, jc, team, template, rubric: str) -> dict:
    """The committee's precision and recall at flagging wrong labels on the gold set."""
    cal = jc.calibration
    path = dom.path / cal.gold
    gold = dom.read_gold(path)
    raw = pd.read_json(path, lines=True) if path.suffix != ".parquet" else pd.read_parquet(path)
    if "label_correct" not in raw or raw["label_correct"].isna().any():
        raise store.DataError(f"{path}: every gold row needs a boolean 'label_correct'")
    student_col = raw["student"].fillna("").astype(str) if "student" in raw else pd.Series([""] * len(raw))
    prompts = [committee.judge_prompt(template, request=r, label=label, student_output=s, rubric=rubric,
                                      catalog=dom.catalog(), skills=dom.tag_choices())
               for r, label, s in zip(gold["request"], gold["label"], student_col)]
    decisions, kappa = committee.ask_committee(team, prompts, consensus=jc.consensus, canon=dom.canon)
    flagged = [d.verdict in WRONG for d in decisions]
    result = committee.flag_quality(flagged, list(~raw["label_correct"].astype(bool))) | {"kappa": kappa,
                                                                                         "gold": str(path)}
    for name, floor in (("precision", cal.min_precision), ("recall", cal.min_recall)):
        if result[name] < floor:
            raise LLMError(f"judge.calibration.min_{name}: the committee's {name} {result[name]:.3f} on {path} "
                           f"({len(gold)} rows) is below {floor}; this judge is refused")
    return result


def ask(verdicts: pd.DataFrame, dom: domain.Domain, consensus: float, team, template,
        rubric: str, *, limit: int = 0) -> tuple[pd.DataFrame, dict]:
    """Send the undecided rows to the committee, rows of the targeted plan kinds first and
    at most `limit` of them (0: all), and apply its decisions."""
    out = verdicts.copy()
    undecided = out.index[dom.undecided(out)]
    # the committee's effort goes where targeting aims first: the teacher errs most there
    first = out.loc[undecided, "kind"].isin(TARGETED)
    idx = list(undecided[first.to_numpy()]) + list(undecided[~first.to_numpy()])
    if limit:
        idx = idx[:limit]
    catalog = dom.catalog()

    def shown(context) -> tuple[list, str]:
        """A logged request's own tools and earlier turns, where it came with them."""
        if not (tables.context(context) and hasattr(dom, "shown_with")):
            return catalog, ""
        return dom.shown_with(context)

    prompts = []
    for i in idx:
        tools, turns = shown(out.at[i, "context"] if "context" in out else None)
        prompts.append(committee.judge_prompt(template, request=out.at[i, "request"], label=out.at[i, "label"],
                                              student_output=out.at[i, "student_output"], rubric=rubric,
                                              catalog=tools, skills=dom.tag_choices(), conversation=turns))
    bar = stage.Progress("judge", "committee answers", len(prompts) * len(team))
    decisions, kappa = committee.ask_committee(team, prompts, consensus=consensus, canon=dom.canon,
                                               on_done=bar.advance)
    bar.close()
    names = ",".join(sorted({c.name for c, _ in team}))
    for i, d in zip(idx, decisions):
        label, request = out.at[i, "label"], out.at[i, "request"]
        final = None
        if d.verdict in (LABEL_OK, MODEL_WRONG):
            # a label that failed one of the domain's checks stays dropped: the checks are certain
            final = label if out.at[i, "verdict"] not in WRONG else None
        elif d.verdict in WRONG and d.corrected is not None and _passes(dom, d.corrected, request,
                                                                        out.at[i, "context"]):
            final = d.corrected
        why = d.analysis or "; ".join(d.errors)
        out.at[i, "verdict"] = d.verdict
        out.at[i, "reason"] = f"committee ({d.agreement:.2f}): {why}".strip()[:500]
        out.at[i, "final_label"] = final
        out.at[i, "judge"] = names
        out.at[i, "agreement"] = d.agreement
        tags = dom.tag_skills(list(out.at[i, "skills"]), d.skills)
        if tags != list(out.at[i, "skills"]):
            out.at[i, "skills"] = tags
    asked = out.loc[idx, "kind"].value_counts().sort_index().to_dict() if idx else {}
    return out, {"asked": len(idx), "undecided": len(undecided), "asked_by_kind": asked, "kappa": kappa,
                 "members": len(team)}


def _passes(dom, label: str, request: str, context) -> bool:
    """The domain's checks on a corrected label, against the row's own tools where it has some."""
    if tables.context(context) and hasattr(dom, "passes_with"):
        return dom.passes_with(label, request, context)
    return dom.passes(label, request)


def unverified(rows: pd.DataFrame) -> pd.DataFrame:
    """judge.verify false: every label the teacher gave is kept as it came (a row with no
    readable label cannot be trained on and stays out)."""
    return rows.assign(student_output="", verdict=[TEACHER_ERROR if e else LABEL_OK for e in rows["error"]],
                       reason=[e or "judge.verify false: kept unchecked" for e in rows["error"]],
                       final_label=[None if e else label for e, label in zip(rows["error"], rows["label"])],
                       judge="none", agreement=None)


def main(cfg: ConfigView, generation: str) -> None:
    jc = cfg.judge
    prev = cfg.generation(generation).prev
    dom = domain.get(cfg.domain)
    domain.require_committee(dom, jc.committee)
    rows = store.read_table(layout.path(generation, layout.GENERATED), tables.GENERATED)
    outputs = None
    model_dir = layout.path(prev, layout.MODEL)
    # The built-in student `prepare` writes has never been trained: its answers say nothing
    # (a Hugging Face student's base model, also generation 0's, does answer).
    untrained = prev == layout.SEED and student.kind_of(model_dir).random_at_start
    if jc.use_student and jc.verify and not untrained:
        _, outputs = student_answers("judge", model_dir, list(rows["request"]), dom=dom, batch_size=jc.batch_size,
                                     contexts=rows["context"], expected=rows["label"])
    verdicts = dom.first_verdicts(rows, outputs, use_repair=jc.repair) if jc.verify else unverified(rows)
    report: dict = {}
    with Session("judge", generation, jc.budget, **stage.model_call_env()) as session:
        if jc.committee and jc.verify:
            template = templates.load(dom.path / jc.template)
            rubric = templates.read_text(dom.path / jc.rubric)
            team = session.committee(jc.committee)
            if jc.calibration.gold:
                report["calibration"] = calibrate(dom, jc, team, template, rubric)
                stage.log("judge", f"calibration {report['calibration']}")
            verdicts, report["committee"] = ask(verdicts, dom, jc.consensus, team, template, rubric,
                                                limit=jc.committee_rows)
        calls = session.finish()
    # The truth is read here and only here, after the verdicts are fixed.
    truth = store.read_table(layout.path(generation, layout.TRUTH), tables.TRUTH)
    report = dom.judge_report(verdicts, truth) | report
    store.write_table(verdicts, layout.path(generation, layout.VERDICTS), tables.VERDICTS)
    store.write_json(report, layout.path(generation, layout.JUDGE_METRICS))
    quality = (f"precision {report['precision']:.3f} recall {report['recall']:.3f}; kept-label accuracy "
               f"{report['kept_label_accuracy']:.3f} (teacher {1 - report['teacher_error_rate']:.3f})"
               if "precision" in report else f"kept {report['kept']} of {report['rows']}")
    stage.log("judge", f"{report['verdicts']}; {quality}; model calls {calls['calls']}, cache hits "
              f"{calls['cache_hits']}, errors {calls['errors']}, tokens "
              f"{calls['prompt_tokens'] + calls['completion_tokens']}, {calls['seconds']}s")


if __name__ == "__main__":
    stage.run("judge", main)
