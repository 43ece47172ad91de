"""How the `toolcall` domain's teacher writes a generation's rows from the plan.

The request generator draws one fresh request per plan row (admitted by the gate); then
either the embedded teacher labels it, imperfectly (teacher.py), or a teacher model
labels it through the client layer. The truth is the request's own calls, which the
generator knows. Rows of the plan kinds in `generate.self_consistency` (default
`skill_synth`) are labelled twice and kept only when both labels agree.
"""

from __future__ import annotations

import random

import pandas as pd

from flywheel import store
from flywheel.gate import Gate, generated_row
from flywheel.llm.client import Prompt
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall import teacher
from flywheel.toolcall.catalog import FUNCTIONS, PHENOMENA, SHIPPED, Catalog
from flywheel.toolcall.factors import factors

TRIES = 20  # redraws per plan row before giving up on a fresh request
KEEP_TRIES = 60  # ... for a row that must keep its parent's factors (the closest draw is taken after that)


def _spec(functions: list[str], skills: list[str]) -> P.Spec:
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        raise store.DataError(f"plan: unknown function {unknown[0]!r}")
    return P.Spec(tuple(functions), frozenset(s for s in skills if s in PHENOMENA))


def draw(rng: random.Random, plan: pd.DataFrame, gate: Gate) -> list[tuple[object, P.Request, list[str]]]:
    """One fresh request per plan row that shows every skill the row asks for (a carrier
    without a slot for, say, a boolean cannot) and passes the gate, with the factors of the
    row's `keep` it shows. A row with a parent is the parent's meaning (its functions and
    skills) in a new composition; one with `keep` also keeps those factors of the parent
    (a notation, a length, a dress: factors.py) and draws the rest afresh, taking the
    first of `KEEP_TRIES` draws that shows all of them, else the one that shows most."""
    out = []
    for plan_row in plan.itertuples(index=False):
        spec = _spec(list(plan_row.functions), list(plan_row.skills))
        keep = set(plan_row.keep)
        closest: list[tuple[int, int, P.Request, list[str]]] = []
        chosen = None
        for i in range(KEEP_TRIES if keep else TRIES):
            req = P.make_request(rng, spec)
            if not spec.phenomena <= set(req.skills):
                continue
            kept = sorted(keep & set(factors(req.text, C.dumps(req.calls)))) if keep else []
            if len(kept) < len(keep):
                closest.append((-len(kept), i, req, kept))
            elif gate.admit(req.text):
                chosen = (req, kept)
                break
        else:
            chosen = next(((req, kept) for _, _, req, kept in sorted(closest, key=lambda c: c[:2])
                           if gate.admit(req.text)), None)
        if chosen is None:
            continue  # the plan asked for more than the phrasing space holds; skip, don't repeat
        out.append((plan_row, *chosen))
    return out


def embedded(rng: random.Random, plan: pd.DataFrame, generation: str, *, gate: Gate,
             error_rate: float, skill_error_rates: dict[str, float],
             twice: tuple[str, ...] = ("skill_synth",)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded teacher. Rows of the plan kinds in `twice` are labelled a second time
    and dropped when the labels differ (self-consistency)."""
    rows, truth = [], []
    for plan_row, req, kept in draw(rng, plan, gate):
        candidate, true, kind = teacher.label(rng, req, skill_error_rates, error_rate)
        if plan_row.kind in twice and teacher.label(rng, req, skill_error_rates, error_rate)[0] != candidate:
            gate.refused["inconsistent"] += 1
            continue
        row = generated_row(generation, plan_row.parent_id, req.skills, "embedded", req.text, C.dumps(candidate),
                            kept=kept, kind=plan_row.kind)
        rows.append(row)
        truth.append({"id": row["id"], "true_label": C.dumps(true), "error_kind": kind})
    return pd.DataFrame(rows, columns=store.GENERATED.names), pd.DataFrame(truth, columns=store.TRUTH.names)


def with_model(client, template, drawn, generation: str, gate: Gate, bar=None,
               twice: tuple[str, ...] = ("skill_synth",), catalog: Catalog = SHIPPED):
    """Requests labelled by a teacher model; the truth is the request's own calls. A row
    varied from a failure shows the teacher that failure (the parent's request, the
    student's answer, the verified label) as a worked example. Rows of the plan kinds in
    `twice` are asked a second time (sample 1) and kept only if both agree."""
    prompts = [Prompt(template.render(request=req.text, catalog=catalog.describe(), example_request=plan_row.parent_request,
                                      student_answer=plan_row.parent_output, example_label=plan_row.parent_label),
                      template.version, C.PARSER_VERSION)
               for plan_row, req, _ in drawn]
    answers = client.ask(prompts, C.parse_json, on_done=bar.advance if bar else None)
    synth = [i for i, (plan_row, _, _) in enumerate(drawn) if plan_row.kind in twice]
    second = dict(zip(synth, client.ask([prompts[i] for i in synth], C.parse_json, sample=1))) if synth else {}
    rows, truth = [], []
    for i, ((plan_row, req, kept), ans) in enumerate(zip(drawn, answers)):
        if i in second and not ans.error and second[i].value != ans.value:  # not self-consistent
            gate.refused["inconsistent"] += 1
            continue
        label = "" if ans.error else ans.value
        row = generated_row(generation, plan_row.parent_id, req.skills, client.name, req.text, label, ans.text,
                            ans.error, kept=kept, kind=plan_row.kind)
        rows.append(row)
        true = C.dumps(req.calls)
        truth.append({"id": row["id"], "true_label": true,
                      "error_kind": "teacher_error" if ans.error else ("" if label == true else "model_label")})
    return pd.DataFrame(rows, columns=store.GENERATED.names), pd.DataFrame(truth, columns=store.TRUTH.names)
