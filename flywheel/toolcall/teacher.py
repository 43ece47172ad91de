"""The `toolcall` domain's teacher: how a generation's rows are written from the plan.

With the shipped catalog, the request generator draws one fresh request per plan row
(admitted by the gate); then either the embedded teacher labels it, imperfectly
(teacher.py), or a teacher model labels it through the client layer. The truth is the
request's own calls, which the generator knows. With a catalog of your own there is no
generator: the teacher model writes each request and its calls from the plan row
(`written`, APIGen-style), and no truth is known. Plan rows of kind `traffic` carry a
logged request, which the teacher model labels as it is (`logged`). Rows of the plan kinds
in `generate.self_consistency` are labelled twice and kept only when both labels agree
(`consistent`, the one place that rule is applied).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

from flywheel import store, tables
from flywheel.gate import Gate
from flywheel.backends.client import Prompt, schema_text
from flywheel.tables import TRAFFIC, generated_row, truth_row
from flywheel.backends import templates
from flywheel.toolcall import calls, label_noise, phrasings, records
from flywheel.toolcall.catalog import Catalog
from flywheel.toolcall.phrasings import FUNCTIONS, PHENOMENA
from flywheel.toolcall.factors import factors
from flywheel.toolcall.sets import skills_of

TRIES = 20  # redraws per plan row before giving up on a fresh request
KEEP_TRIES = 60  # ... for a row that must keep its parent's factors (the closest draw is taken after that)


def _spec(functions: list[str], skills: list[str]) -> phrasings.Spec:
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        raise store.DataError(f"plan: unknown function {unknown[0]!r}")
    return phrasings.Spec(tuple(functions), frozenset(s for s in skills if s in PHENOMENA))


def draw(rng: random.Random, plan: pd.DataFrame, gate: Gate) -> list[tuple[object, phrasings.Request, list[str]]]:
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
        closest: list[tuple[int, int, phrasings.Request, list[str]]] = []
        chosen = None
        for i in range(KEEP_TRIES if keep else TRIES):
            req = phrasings.make_request(rng, spec)
            if not spec.phenomena <= set(req.skills):
                continue
            kept = sorted(keep & set(factors(req.text, calls.dumps(req.calls), phrasings.CATALOG))) if keep else []
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


def consistent(gate: Gate, first, second) -> bool:
    """Self-consistency (`generate.self_consistency`): a row labelled a second time is kept
    only when both labels agree; a disagreement is counted as `inconsistent`. `second`
    is None for a row that was labelled once."""
    if second is None or second == first:
        return True
    gate.refuse("inconsistent")
    return False


def second_opinions(client, prompts: list[Prompt], kinds: list[str], twice: tuple[str, ...], parse) -> list:
    """The teacher model's second answer (sample 1) to the prompts of rows whose plan kind
    is in `twice`, as read by `parse` (None where it was not asked; an unreadable answer
    reads as its error, which agrees with no label)."""
    asked = [i for i, kind in enumerate(kinds) if kind in twice]
    answers = dict(zip(asked, client.ask([prompts[i] for i in asked], parse, sample=1))) if asked else {}
    return [None if i not in answers else (answers[i].error or answers[i].value) for i in range(len(prompts))]


@dataclass(frozen=True)
class Logged:
    """A logged request to label: no calls known, no skills before its label; its context
    (records.py: the turns before it, the tools it offered), if it came with one."""
    text: str
    context: str | None = None
    calls: None = None
    skills: tuple[str, ...] = ()


def logged(plan: pd.DataFrame, gate: Gate) -> list[tuple[object, Logged, list[str]]]:
    """The plan's `traffic` rows as requests to label, those the gate admits (a request
    the pool already holds is not labelled twice)."""
    return [(row, Logged(row.parent_request, tables.context(getattr(row, "context", None))), [])
            for row in plan.itertuples(index=False) if row.kind == TRAFFIC and gate.admit(row.parent_request)]


def embedded(rng: random.Random, plan: pd.DataFrame, generation: str, *, gate: Gate,
             error_rate: float, skill_error_rates: dict[str, float],
             twice: tuple[str, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded teacher: each request labelled by the error model (label_noise.py);
    rows of the plan kinds in `twice` a second time (self-consistency)."""
    rows, truth = [], []
    for plan_row, req, kept in draw(rng, plan, gate):
        candidate, true, kind = label_noise.label(rng, req, skill_error_rates, error_rate)
        second = label_noise.label(rng, req, skill_error_rates, error_rate)[0] if plan_row.kind in twice else None
        if not consistent(gate, candidate, second):
            continue
        row = generated_row(generation, plan_row.parent_id, req.skills, "embedded", req.text, calls.dumps(candidate),
                            kept=kept, kind=plan_row.kind)
        rows.append(row)
        truth.append(truth_row(row["id"], calls.dumps(true), kind))
    return tables.frame(rows, tables.GENERATED), tables.frame(truth, tables.TRUTH)


def with_model(client, template, drawn, generation: str, gate: Gate, bar=None, *,
               twice: tuple[str, ...], catalog: Catalog):
    """Requests labelled by a teacher model; the truth is the request's own calls (none for
    a logged request, whose skills are read off its label). A row varied from a failure
    shows the teacher that failure (the parent's request, the student's answer, the
    verified label) as a worked example. Rows of the plan kinds in `twice` are asked a
    second time (sample 1) and kept only if both agree."""
    def example(plan_row, field: str):
        return None if plan_row.kind == TRAFFIC else getattr(plan_row, field)

    def own(req) -> Catalog:  # a logged request's own tools, where it offered some
        return records.catalog_for(getattr(req, "context", None), catalog)

    prompts = [Prompt(template.render(request=req.text, catalog=own(req).describe(),
                                      conversation=templates.conversation(
                                          records.context_of(getattr(req, "context", None)).get("messages", [])),
                                      example_request=example(plan_row, "parent_request"),
                                      student_answer=example(plan_row, "parent_output"),
                                      example_label=example(plan_row, "parent_label")),
                      template.version, calls.PARSER_VERSION, schema_text(calls.answer_schema(own(req))))
               for plan_row, req, _ in drawn]
    answers = client.ask(prompts, calls.parse_json, on_done=bar.advance if bar else None)
    second = second_opinions(client, prompts, [plan_row.kind for plan_row, _, _ in drawn], twice, calls.parse_json)
    rows, truth = [], []
    for (plan_row, req, kept), ans, again in zip(drawn, answers, second):
        if not ans.error and not consistent(gate, ans.value, again):
            continue
        label = "" if ans.error else ans.value
        if req.calls is None:  # a logged request: skills from its label, no truth
            skills = _skills(req.text, label, own(req))
            rows.append(generated_row(generation, None, skills, client.name, req.text, label, ans.text, ans.error,
                                      kind=plan_row.kind, source=TRAFFIC, context=req.context))
            continue
        row = generated_row(generation, plan_row.parent_id, req.skills, client.name, req.text, label, ans.text,
                            ans.error, kept=kept, kind=plan_row.kind)
        rows.append(row)
        true = calls.dumps(req.calls)
        truth.append(truth_row(row["id"], true, "teacher_error" if ans.error else
                               ("" if label == true else "model_label")))
    return tables.frame(rows, tables.GENERATED), tables.frame(truth, tables.TRUTH)


def _skills(request: str, label: str, catalog: Catalog) -> list[str]:
    try:
        return skills_of(request, calls.loads(label), catalog) if label else []
    except (KeyError, AttributeError, TypeError, ValueError):  # a call of no function of the catalog
        return []


WRITER_PARSER = "toolcall-written-request-v1"


def parse_written(text: str) -> tuple[str, str]:
    """A teacher's {"request": ..., "calls": [...]} as (request, canonical label); ValueError if not one."""
    from flywheel.backends.committee import extract_json

    value = extract_json(text)
    if not isinstance(value, dict) or not isinstance(value.get("request"), str) or not value["request"].strip():
        raise ValueError('not an object with a "request" and its "calls"')
    return " ".join(value["request"].split()), calls.canonical(value.get("calls", []))


def _references(rng: random.Random, rows: list, pool: pd.DataFrame) -> list[tuple[str | None, str | None]]:
    """Per plan row, a pool row that calls the same functions (None where none does): an
    example of the task, so that rows asking for the same functions do not share a prompt."""
    by_functions: dict[tuple, list[tuple[str, str]]] = {}
    for request, label in zip(pool["request"], pool["label"]):
        by_functions.setdefault(tuple(c["name"] for c in calls.loads(label)), []).append((request, label))
    return [rng.choice(by_functions[tuple(r.functions)]) if by_functions.get(tuple(r.functions)) else (None, None)
            for r in rows]


def written(client, template, plan: pd.DataFrame, pool: pd.DataFrame, generation: str, gate: Gate,
            catalog: Catalog, rng: random.Random, bar=None, *, twice: tuple[str, ...]) -> pd.DataFrame:
    """Requests and their calls written by the teacher model from the plan rows (a catalog
    of your own has no request generator). Each prompt shows a pool row calling the same
    functions as a reference and carries the row's number (`variation`), so no two rows
    share a prompt (and an answer from the cache). A row varied from a failure shows the
    failure (request, the student's answer, the verified calls) and asks for a request
    like it. A request the gate refuses or an answer that cannot be read is not kept
    (counted in `gate.refused`); rows of the kinds in `twice` are kept only when a second
    answer writes the same calls for the same request."""
    rows_in = [r for r in plan.itertuples(index=False) if r.kind != TRAFFIC]
    refs = _references(rng, rows_in, pool)
    written_schema = schema_text({"type": "object", "required": ["request", "calls"], "properties": {
        "request": {"type": "string", "minLength": 1}, "calls": calls.answer_schema(catalog)}})
    prompts = [Prompt(template.render(catalog=catalog.describe(), functions=list(r.functions), skills=list(r.skills),
                                      variation=i, reference_request=ref[0], reference_calls=ref[1],
                                      example_request=r.parent_request, student_answer=r.parent_output,
                                      example_label=r.parent_label), template.version, WRITER_PARSER, written_schema)
               for i, (r, ref) in enumerate(zip(rows_in, refs))]
    answers = client.ask(prompts, parse_written, on_done=bar.advance if bar else None)
    second = second_opinions(client, prompts, [r.kind for r in rows_in], twice, parse_written)
    rows = []
    for plan_row, ans, again in zip(rows_in, answers, second):
        if ans.error:
            gate.refuse("unreadable")
            continue
        if not consistent(gate, ans.value, again):
            continue
        request, label = ans.value
        if not gate.admit(request):
            continue
        rows.append(generated_row(generation, plan_row.parent_id, _skills(request, label, catalog), client.name,
                                  request, label, ans.text, kind=plan_row.kind))
    return tables.frame(rows, tables.GENERATED)
