"""Stage `judge`: a verdict for every candidate label of this generation.

Cheap deterministic checks first, the LLM committee only where they cannot decide (as
LoopTool's label verification does):
- `toolcall`: the verifier cascade (schema, types and enums, grounding) and the current
  student's answer are conclusive when a label passes every check and the student gives
  the same answer, or fails a check and the verifier repairs it from the request. The
  rest goes to the committee, when there is one: a label that passes every check without
  the student's agreement (errors like swapped arguments pass every check), and a wrong
  label the verifier cannot repair (dropped otherwise). A correction from the committee
  counts only if it passes the checks; a label that failed a check is never kept.
- `llm`: there are no checks beyond the format, so every readable label goes to it.
Rows the committee does not agree on (`no_consensus`) or cannot answer (`judge_error`)
are held out of training. With `judge.calibration.gold`, the committee is first measured
on gold-labelled rows and refused below the configured precision or recall.

Reads data/<gen>/generated.parquet, data/<prev>/model, data/tokenizer.json; writes
data/<gen>/verdicts.parquet, data/<gen>/judge.json, data/<gen>/judge_calls.parquet.
data/<gen>/truth.parquet (toolcall) is read only after every verdict is final, to measure
the judge's precision and recall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from flywheel import domain, layout, llm_domain, stage, store, student
from flywheel.config import Config
from flywheel.llm import LLMError, templates
from flywheel.llm import judge as committee
from flywheel.toolcall import calls as C
from flywheel.toolcall import judge
from flywheel.toolcall.catalog import describe
from flywheel.toolcall.verifier import check

WRONG = (judge.LABEL_WRONG, judge.BOTH_WRONG)


def student_answers(cfg: Config, model_dir, requests: list[str]) -> list[str]:
    codec = student.Codec(student.load_tokenizer(layout.TOKENIZER))
    model = student.load(model_dir)
    bar = stage.Progress("judge", "student answers", len(requests))
    outs = domain.answers(cfg.domain, model, codec, requests, batch_size=cfg.judge.batch_size, on_batch=bar.advance)
    bar.close()
    return outs


def judge_rows(rows: pd.DataFrame, outputs: list[str] | None, *, use_repair: bool) -> pd.DataFrame:
    """The embedded checks on toolcall rows; rows without a label are `teacher_error`."""
    out = rows.copy()
    results = []
    for i, (request, label, error) in enumerate(zip(rows["request"], rows["label"], rows["error"])):
        if error:
            results.append(judge.Verdict(judge.TEACHER_ERROR, error, None))
            continue
        answer = C.parse(outputs[i].split()) if outputs is not None else None
        results.append(judge.verdict(request, C.loads(label), answer, use_repair=use_repair))
    out["student_output"] = outputs if outputs is not None else ""
    out["verdict"] = [r.verdict for r in results]
    out["reason"] = [r.reason for r in results]
    out["final_label"] = [None if r.final_label is None else C.dumps(r.final_label) for r in results]
    out["judge"] = "embedded"
    out["agreement"] = None
    return out


def pending_rows(rows: pd.DataFrame, outputs: list[str] | None) -> pd.DataFrame:
    """The llm domain: every readable label waits for the committee."""
    out = rows.copy()
    out["student_output"] = outputs if outputs is not None else ""
    out["verdict"] = [judge.TEACHER_ERROR if e else judge.JUDGE_ERROR for e in rows["error"]]
    out["reason"] = [e or "not judged yet" for e in rows["error"]]
    out["final_label"] = None
    out["judge"] = ""
    out["agreement"] = None
    return out


def undecided(verdicts: pd.DataFrame, domain_name: str) -> pd.Series:
    if domain_name == "llm":
        return verdicts["verdict"] != judge.TEACHER_ERROR
    unconfirmed = (verdicts["verdict"] == judge.LABEL_OK) & ~verdicts["reason"].str.contains(judge.AGREES)
    return unconfirmed | (verdicts["verdict"] == judge.MODEL_WRONG) | \
        (verdicts["verdict"].isin(WRONG) & verdicts["final_label"].isna())


def canon_for(cfg: Config, request: str | None = None):
    """What counts as a corrected label: toolcall, a call list that passes the checks."""
    if cfg.domain.name == "llm":
        return lambda value: llm_domain.canon(value, cfg.domain.metric)

    def canon(value: Any) -> str | None:
        try:
            label = C.canonical(value)
        except ValueError:
            return None
        return label if request is None or not check(request, C.loads(label)) else None
    return canon


def _catalog(cfg: Config) -> list:
    return describe() if cfg.domain.name == "toolcall" else []


def calibrate(cfg: Config, team, template, rubric: str) -> dict:
    """The committee's precision and recall at flagging wrong labels on the gold set."""
    cal = cfg.judge.calibration
    path = Path(cfg.domain.path) / cal.gold
    metric = "json" if cfg.domain.name == "toolcall" else cfg.domain.metric
    gold = llm_domain.read_examples(path, metric, split="gold")
    raw = pd.read_json(path, lines=True) if path.suffix != ".parquet" else pd.read_parquet(path)
    if "label_correct" not in raw or raw["label_correct"].isna().any():
        raise store.DataError(f"{path}: every gold row needs a boolean 'label_correct'")
    student_col = raw["student"].fillna("").astype(str) if "student" in raw else pd.Series([""] * len(raw))
    prompts = [committee.judge_prompt(template, request=r, label=label, student_output=s, rubric=rubric,
                                      catalog=_catalog(cfg), skills=cfg.domain.skills)
               for r, label, s in zip(gold["request"], gold["label"], student_col)]
    decisions, kappa = committee.ask_committee(team, prompts, consensus=cfg.judge.consensus, canon=canon_for(cfg))
    flagged = [d.verdict in WRONG for d in decisions]
    result = committee.flag_quality(flagged, list(~raw["label_correct"].astype(bool))) | {"kappa": kappa,
                                                                                         "gold": str(path)}
    for name, floor in (("precision", cal.min_precision), ("recall", cal.min_recall)):
        if result[name] < floor:
            raise LLMError(f"judge.calibration.min_{name}: the committee's {name} {result[name]:.3f} on {path} "
                           f"({len(gold)} rows) is below {floor}; this judge is refused")
    return result


def ask(verdicts: pd.DataFrame, cfg: Config, team, template, rubric: str) -> tuple[pd.DataFrame, dict]:
    """Send the undecided rows to the committee and apply its decisions."""
    out = verdicts.copy()
    todo = undecided(out, cfg.domain.name)
    idx = list(out.index[todo])
    catalog = _catalog(cfg)
    prompts = [committee.judge_prompt(template, request=out.at[i, "request"], label=out.at[i, "label"],
                                      student_output=out.at[i, "student_output"], rubric=rubric, catalog=catalog,
                                      skills=cfg.domain.skills) for i in idx]
    bar = stage.Progress("judge", "committee answers", len(prompts) * len(team))
    decisions, kappa = committee.ask_committee(team, prompts, consensus=cfg.judge.consensus,
                                               canon=canon_for(cfg), on_done=bar.advance)
    bar.close()
    names = ",".join(sorted({c.name for c, _ in team}))
    for i, d in zip(idx, decisions):
        label, request = out.at[i, "label"], out.at[i, "request"]
        passes = canon_for(cfg, request)
        final = None
        if d.verdict in (judge.LABEL_OK, judge.MODEL_WRONG):
            # toolcall rows whose label failed a check stay dropped: the checks are certain.
            final = label if cfg.domain.name == "llm" or out.at[i, "verdict"] not in WRONG else None
        elif d.verdict in WRONG and d.corrected is not None:
            final = passes(C.loads(d.corrected) if cfg.domain.name == "toolcall" else d.corrected)
        why = d.analysis or "; ".join(d.errors)
        out.at[i, "verdict"] = d.verdict
        out.at[i, "reason"] = f"committee ({d.agreement:.2f}): {why}".strip()[:500]
        out.at[i, "final_label"] = final
        out.at[i, "judge"] = names
        out.at[i, "agreement"] = d.agreement
        if cfg.domain.name == "llm" and list(out.at[i, "skills"]) == [llm_domain.UNTAGGED]:
            tags = [s for s in d.skills if s in cfg.domain.skills]
            if tags:
                out.at[i, "skills"] = tags
    return out, {"asked": len(idx), "kappa": kappa, "members": len(team)}


def main(cfg: Config, generation: str) -> None:
    jc = cfg.judge
    prev = cfg.generation(generation).prev
    rows = store.read_table(layout.path(generation, layout.GENERATED), store.GENERATED)
    outputs = None
    if jc.use_student:
        outputs = student_answers(cfg, layout.path(prev, layout.MODEL), list(rows["request"]))
    if cfg.domain.name == "toolcall":
        verdicts = judge_rows(rows, outputs, use_repair=jc.repair)
    else:
        verdicts = pending_rows(rows, outputs)
    report: dict = {}
    with stage.llm_session("judge", generation, jc.budget) as session:
        if jc.committee:
            template = templates.load(Path(cfg.domain.path) / jc.template)
            rubric = templates.read_text(Path(cfg.domain.path) / jc.rubric)
            team = session.committee(jc.committee)
            if jc.calibration.gold:
                report["calibration"] = calibrate(cfg, team, template, rubric)
                stage.log("judge", f"calibration {report['calibration']}")
            verdicts, report["committee"] = ask(verdicts, cfg, team, template, rubric)
        calls = session.finish()
    if cfg.domain.name == "toolcall":
        # The truth is read here and only here, after the verdicts are fixed.
        truth = store.read_table(layout.path(generation, layout.TRUTH), store.TRUTH)
        report = judge.quality(verdicts, truth) | report
    else:
        report["verdicts"] = {v: int((verdicts["verdict"] == v).sum()) for v in judge.VERDICTS}
        report["rows"] = len(verdicts)
        report["kept"] = int(verdicts["final_label"].notna().sum())
    store.write_table(verdicts, layout.path(generation, layout.VERDICTS), store.VERDICTS)
    store.write_json(report, layout.path(generation, layout.JUDGE_METRICS))
    quality = (f"precision {report['precision']:.3f} recall {report['recall']:.3f}; kept-label accuracy "
               f"{report['kept_label_accuracy']:.3f} (teacher {1 - report['teacher_error_rate']:.3f})"
               if "precision" in report else f"kept {report['kept']} of {report['rows']}")
    stage.log("judge", f"{report['verdicts']}; {quality}; model calls {calls['calls']}, cache hits "
              f"{calls['cache_hits']}, errors {calls['errors']}, tokens "
              f"{calls['prompt_tokens'] + calls['completion_tokens']}, {calls['seconds']}s")


if __name__ == "__main__":
    stage.run("judge", main)
