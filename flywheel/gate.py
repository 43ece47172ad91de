"""The validation gate of `generate`: every new request passes it before it counts
against the plan's budget, whatever the domain and the teacher.

Refused: a request equal (after normalisation, store.request_key) to an evaluation
request or a near-duplicate of one (decontam.py: the same content words in other case,
punctuation or filler), or equal to one already in the pool or in this generation. The gate counts what it
refuses; `generate.json` reports it. (An unreadable label is not refused here: its row
keeps the raw answer and an `error`, counted as `teacher_errors`, and the judge drops it.)
"""

from __future__ import annotations

from flywheel import store
from flywheel.decontam import NearDuplicates


class Gate:
    def __init__(self, evals: set[str], pool: set[str]):
        self.evals, self.seen = {store.request_key(t) for t in evals}, {store.request_key(t) for t in pool}
        self.near = NearDuplicates(sorted(evals))
        self.refused = {"eval_overlap": 0, "duplicate": 0, "inconsistent": 0}

    def admit(self, text: str) -> bool:
        key = store.request_key(text)
        if key in self.evals or self.near.match(text) is not None:
            self.refused["eval_overlap"] += 1
            return False
        if key in self.seen:
            self.refused["duplicate"] += 1
            return False
        self.seen.add(key)
        return True


def generated_row(generation: str, parent_id, skills, teacher: str, request: str, label: str, raw: str = "",
                  error: str = "", *, kept=(), kind: str = "", source: str = "synthetic") -> dict:
    """One row of generated.parquet (store.GENERATED); `kind` is the plan row's, `source`
    `synthetic` (the teacher wrote the request) or `traffic` (a user did). `generate` fills
    in its `factors`."""
    return {"id": store.row_id(request, label), "generation": generation, "source": source,
            "parent_id": parent_id, "skills": list(skills), "teacher": teacher, "request": request,
            "label": label, "raw": raw, "error": error, "factors": [], "kept": list(kept), "kind": kind}
