"""The validation gate of `generate`: every new request passes it before it counts
against the plan's budget, whatever the domain and the teacher.

Refused: a request equal or nearly the same as an evaluation request
(decontam.EvalRequests), or equal (decontam.request_key) to one already in the pool or in
this generation. The gate counts what it refuses; `generate.json` reports it: those two,
`inconsistent` (a self-consistency check failed: flywheel/toolcall/teacher.py) and
`unreadable` (a teacher model's answer held no request to admit). An unreadable label
of a request that was admitted is not refused here: its row keeps the raw answer and an
`error`, counted as `teacher_errors`, and the judge drops it.
"""

from __future__ import annotations

from flywheel.decontam import EvalRequests, request_key

REFUSALS = ("eval_overlap", "duplicate", "inconsistent", "unreadable")


class Gate:
    def __init__(self, evals: set[str], pool: set[str]):
        self.evals = EvalRequests(evals)
        self.seen = {request_key(t) for t in pool}
        self.refused = dict.fromkeys(REFUSALS, 0)

    def admit(self, text: str) -> bool:
        if self.evals.match(text) is not None:
            self.refused["eval_overlap"] += 1
            return False
        key = request_key(text)
        if key in self.seen:
            self.refused["duplicate"] += 1
            return False
        self.seen.add(key)
        return True

    def refuse(self, why: str) -> None:
        """Count a row refused for a reason of the teacher's (`inconsistent`, `unreadable`)."""
        self.refused[why] += 1
