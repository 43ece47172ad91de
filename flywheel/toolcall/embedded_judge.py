"""The embedded judge: a verdict per candidate label, and the judge's measured quality.

`verdict` decides from the request, the teacher's label and the current student's
answer; it never sees the truth. `quality` is the only code that reads the truth: it
scores the verdicts afterwards, which the simulation can do because the teacher drew
every request itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from flywheel.toolcall import calls
from flywheel.toolcall.catalog import BOOL, DATE, ENUM, Catalog
from flywheel.verdicts import (BOTH_WRONG, JUDGE_ERROR, LABEL_OK, LABEL_WRONG, MODEL_WRONG, NO_CONSENSUS,
                               TEACHER_ERROR, VERDICTS)
from flywheel.toolcall.verifier import check, repair

AGREES = "student agrees"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    final_label: list | None  # None: the row is dropped


def verdict(request: str, label: list, student: list | None, *, use_repair: bool = True,
            catalog: Catalog) -> Verdict:
    """Judge one label. `student` is the student's parsed answer (None: unparseable or no student).

    - label passes the cascade: `label_ok` if the student agrees (or there is none to ask),
      else `model_wrong` (the label stands; the student has something to learn here);
    - label fails: `label_wrong` when the student's answer passes every check, `both_wrong`
      when it does not; corrected to the verifier's repair when it has one (it is grounded
      in the request), else to the student's answer when that passes; dropped otherwise.
    """
    problems = check(request, label, catalog)
    student_ok = student is not None and not check(request, student, catalog)
    if not problems:
        if student is None or calls.accepts(student, label, catalog):
            return Verdict(LABEL_OK, "passes schema, types, grounding" + ("" if student is None else f", {AGREES}"),
                           label)
        return Verdict(MODEL_WRONG, "label passes every check; student answers otherwise", label)
    why = problems[0]
    # The verifier's repair is grounded in the request, so it is trusted before the student.
    fixed = repair(request, label, catalog) if use_repair else None
    if student_ok:
        kind = LABEL_WRONG
        if fixed is None:
            return Verdict(kind, f"{why}; corrected to the student's answer", student)
    else:
        kind = BOTH_WRONG if student is not None else LABEL_WRONG
    if fixed is not None:
        return Verdict(kind, f"{why}; corrected by the verifier", fixed)
    return Verdict(kind, f"{why}; dropped", None)


def quality(verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Judge precision/recall at flagging wrong labels, and how clean the kept labels are.
    Rows whose teacher answer could not be read have no label to judge and are left out."""
    df = verdicts.merge(truth, on="id", how="left", validate="one_to_one")
    df = df[df["verdict"] != TEACHER_ERROR]
    wrong = df["label"] != df["true_label"]  # canonical JSON: equal labels are equal strings
    flagged = df["verdict"].isin([LABEL_WRONG, BOTH_WRONG])
    kept = df["final_label"].notna()
    corrected = flagged & kept
    tp = int((wrong & flagged).sum())
    return {
        "rows": len(df),
        "teacher_errors": int(wrong.sum()),
        "teacher_error_rate": float(wrong.mean()) if len(df) else 0.0,
        "flagged": int(flagged.sum()),
        "precision": tp / int(flagged.sum()) if flagged.any() else 1.0,
        "recall": tp / int(wrong.sum()) if wrong.any() else 1.0,
        "corrected": int(corrected.sum()),
        "correction_accuracy": float((df.loc[corrected, "final_label"] == df.loc[corrected, "true_label"]).mean())
        if corrected.any() else 1.0,
        "dropped": int((~kept).sum()),
        "held_out": int(df["verdict"].isin([NO_CONSENSUS, JUDGE_ERROR]).sum()),
        "kept_label_accuracy": float((df.loc[kept, "final_label"] == df.loc[kept, "true_label"]).mean())
        if kept.any() else 1.0,
        "verdicts": {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS},
        "missed_by_kind": df.loc[wrong & ~flagged, "error_kind"].value_counts().sort_index().to_dict(),
    }


_RELATIVE = ("today", "tomorrow", "+", "next_")


def diagnose(answer: list | None, label: list, catalog: Catalog) -> list[str]:
    """The skills a wrong answer got wrong, named from how it differs from the label:
    the error analysis the failure profile counts (empty when the answer is right). A
    skill the catalog does not count under (a catalog of your own has no `unit_words`)
    falls back to the function's family, or `enums` for an enum."""
    skills = set(catalog.skills)

    def named(skill: str, fallback: str) -> str:
        return skill if skill in skills else fallback

    if answer is not None and calls.accepts(answer, label, catalog):
        return []
    if answer is None:
        return ["format"]
    if not label:
        return ["no_call"]
    missing: set[str] = set()
    if len(answer) < len(label):
        missing.add("two_calls")
    by_name = {c["name"]: c for c in answer}
    for call in label:
        fn = catalog.functions.get(call["name"])
        got = by_name.get(call["name"])
        if fn is None:
            continue
        if got is None:
            missing.add(fn.family)
            continue
        for arg in fn.args:
            want, have = call["arguments"].get(arg.name), got.get("arguments", {}).get(arg.name)
            if want is None and have is None or want is not None and have is not None and calls.value_ok(
                    arg, have, (call.get("accept") or {}).get(arg.name) or calls.possible(want)):
                continue
            if want is None or have is None and not arg.required:
                missing.add("optional_args")
            elif arg.type == DATE and str(want).startswith(_RELATIVE):
                missing.add(named("relative_dates", fn.family))
            elif arg.type == ENUM:
                missing.add(named("unit_words", named("enums", fn.family)))
            elif arg.type == BOOL:
                missing.add(named("booleans", fn.family))
            else:
                missing.add(fn.family)
    first = catalog.functions.get(label[0]["name"])
    return sorted(missing) or [first.family if first else "format"]
