"""Stage `generate`: the teacher turns the previous generation's expansion plan into new
requests with candidate labels.

- `toolcall` with the embedded teacher: the request generator draws a request per plan
  row and the embedded teacher labels it, imperfectly.
- `toolcall` with a model teacher: the same requests, labelled by the model through the
  client layer (template `generate.template`).
- `llm`: the model writes a new example (input and output) of the plan row's skill from a
  reference example (the plan row's parent, else a pool row of that skill).

An answer that cannot be read keeps its raw text and marks the row with an `error`; the
judge drops it. No request equals an evaluation request. Reads data/<prev>/plan.parquet,
data/<prev>/train.parquet, data/eval.parquet; writes data/<gen>/generated.parquet,
data/<gen>/truth.parquet (toolcall only has a truth; only the judge's quality
measurement reads it), data/<gen>/generate.json and data/<gen>/generate_calls.parquet.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from flywheel import layout, llm_domain, stage, store
from flywheel.config import Config
from flywheel.llm import templates
from flywheel.llm.client import Prompt
from flywheel.toolcall import calls as C
from flywheel.toolcall import phrasings as P
from flywheel.toolcall import teacher
from flywheel.toolcall.catalog import FUNCTIONS, PHENOMENA, describe

TRIES = 20  # redraws per plan row before giving up on a fresh request
TEACHER_VARIABLES = {  # what the teacher template is rendered with, per domain
    "toolcall": frozenset({"request", "catalog"}),
    "llm": frozenset({"example_input", "example_output", "skill", "skills", "variation", "rubric"}),
}


def _spec(functions: list[str], skills: list[str]) -> P.Spec:
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        raise store.DataError(f"plan: unknown function {unknown[0]!r}")
    return P.Spec(tuple(functions), frozenset(s for s in skills if s in PHENOMENA))


class Gate:
    """The validation gate every new request passes before it counts against the budget:
    not a duplicate of the pool (or of this generation), not an evaluation request. It
    counts what it refuses. (An unreadable label is not refused here: its row keeps the raw
    answer and an `error`, counted as `teacher_errors`, and the judge drops it.)"""

    def __init__(self, evals: set[str], pool: set[str]):
        self.evals, self.seen = {store.request_key(t) for t in evals}, {store.request_key(t) for t in pool}
        self.refused = {"eval_overlap": 0, "duplicate": 0, "inconsistent": 0}

    def admit(self, text: str) -> bool:
        key = store.request_key(text)
        if key in self.evals:
            self.refused["eval_overlap"] += 1
            return False
        if key in self.seen:
            self.refused["duplicate"] += 1
            return False
        self.seen.add(key)
        return True


def draw(rng: random.Random, plan: pd.DataFrame, gate: Gate) -> list[tuple[object, P.Request]]:
    """One fresh request per plan row that passes the gate."""
    out = []
    for plan_row in plan.itertuples(index=False):
        spec = _spec(list(plan_row.functions), list(plan_row.skills))
        for _ in range(TRIES):
            req = P.make_request(rng, spec)
            if gate.admit(req.text):
                break
        else:
            continue  # the plan asked for more than the phrasing space holds; skip, don't repeat
        out.append((plan_row, req))
    return out


def _row(generation: str, parent_id, skills, teacher_name: str, request: str, label: str, raw: str = "",
         error: str = "") -> dict:
    return {"id": store.row_id(request, label), "generation": generation, "source": "synthetic",
            "parent_id": parent_id, "skills": list(skills), "teacher": teacher_name, "request": request,
            "label": label, "raw": raw, "error": error}


def generate(rng: random.Random, plan: pd.DataFrame, generation: str, *, gate: Gate,
             error_rate: float, skill_error_rates: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The embedded teacher on the toolcall domain. `skill_synth` rows are labelled twice
    and kept only when both labels agree (self-consistency)."""
    rows, truth = [], []
    for plan_row, req in draw(rng, plan, gate):
        candidate, true, kind = teacher.label(rng, req, skill_error_rates, error_rate)
        if plan_row.kind == "skill_synth" and teacher.label(rng, req, skill_error_rates, error_rate)[0] != candidate:
            gate.refused["inconsistent"] += 1
            continue
        row = _row(generation, plan_row.parent_id, req.skills, "embedded", req.text, C.dumps(candidate))
        rows.append(row)
        truth.append({"id": row["id"], "true_label": C.dumps(true), "error_kind": kind})
    return pd.DataFrame(rows, columns=store.GENERATED.names), pd.DataFrame(truth, columns=store.TRUTH.names)


def label_with_model(client, template: templates.Template, drawn, generation: str, gate: Gate, bar=None):
    """Toolcall requests labelled by a teacher model; the truth is the request's own calls.
    `skill_synth` rows are asked a second time (sample 1) and kept only if both agree."""
    prompts = [Prompt(template.render(request=req.text, catalog=describe()), template.version, C.PARSER_VERSION)
               for _, req in drawn]
    answers = client.ask(prompts, C.parse_json, on_done=bar.advance if bar else None)
    synth = [i for i, (plan_row, _) in enumerate(drawn) if plan_row.kind == "skill_synth"]
    second = dict(zip(synth, client.ask([prompts[i] for i in synth], C.parse_json, sample=1))) if synth else {}
    rows, truth = [], []
    for i, ((plan_row, req), ans) in enumerate(zip(drawn, answers)):
        if i in second and not ans.error and second[i].value != ans.value:  # not self-consistent
            gate.refused["inconsistent"] += 1
            continue
        label = "" if ans.error else ans.value
        row = _row(generation, plan_row.parent_id, req.skills, client.name, req.text, label, ans.text, ans.error)
        rows.append(row)
        true = C.dumps(req.calls)
        truth.append({"id": row["id"], "true_label": true,
                      "error_kind": "teacher_error" if ans.error else ("" if label == true else "model_label")})
    return pd.DataFrame(rows, columns=store.GENERATED.names), pd.DataFrame(truth, columns=store.TRUTH.names)


def reference_examples(plan: pd.DataFrame, pool: pd.DataFrame, rng: random.Random) -> list[pd.Series]:
    """Per plan row, the example the teacher varies: its parent, else a pool row of its skill."""
    by_id = pool.set_index("id")
    by_skill: dict[str, list[int]] = {}
    for i, skills in enumerate(pool["skills"]):
        for s in skills:
            by_skill.setdefault(s, []).append(i)
    out = []
    for row in plan.itertuples(index=False):
        if row.parent_id is not None and row.parent_id in by_id.index:
            out.append(by_id.loc[row.parent_id])
            continue
        choices = [i for s in row.skills for i in by_skill.get(s, [])] or list(range(len(pool)))
        out.append(pool.iloc[rng.choice(choices)])
    return out


def write_examples(client, template: templates.Template, plan: pd.DataFrame, pool: pd.DataFrame, generation: str,
                   cfg: Config, rng: random.Random, gate: Gate, bar=None) -> pd.DataFrame:
    """The llm domain: new examples from the teacher model, one per plan row."""
    dc = cfg.domain
    rubric = templates.read_text(Path(dc.path) / cfg.judge.rubric)
    refs = reference_examples(plan, pool, rng)
    prompts = []
    for i, (plan_row, ref) in enumerate(zip(plan.itertuples(index=False), refs)):
        skill = list(plan_row.skills)[0] if len(plan_row.skills) else llm_domain.UNTAGGED
        prompts.append(Prompt(template.render(example_input=ref["request"], example_output=ref["label"], skill=skill,
                                              skills=dc.skills, variation=i, rubric=rubric),
                              template.version, llm_domain.TEACHER_PARSER + dc.metric))
    answers = client.ask(prompts, llm_domain.parse_teacher(dc.metric), on_done=bar.advance if bar else None)
    rows = []
    for plan_row, ans in zip(plan.itertuples(index=False), answers):
        if ans.error:
            rows.append(_row(generation, plan_row.parent_id, plan_row.skills, client.name, "", "", ans.text,
                             ans.error))
            continue
        request, label = ans.value
        if not gate.admit(request):  # a repeat of the pool or this generation, or an evaluation input
            continue
        rows.append(_row(generation, plan_row.parent_id, plan_row.skills, client.name, request, label, ans.text))
    return pd.DataFrame(rows, columns=store.GENERATED.names)


def main(cfg: Config, generation: str) -> None:
    gc = cfg.generate
    prev = cfg.generation(generation).prev
    plan = store.read_table(layout.path(prev, layout.PLAN), store.PLAN)
    evals = store.read_table(layout.EVAL, store.EVALSET)
    rng = random.Random(stage.stage_seed(cfg.seed, generation, "generate"))
    pool = store.read_table(layout.path(prev, layout.TRAIN), store.TRAINSET)
    gate = Gate(set(evals["request"]), set(pool["request"]))
    truth = pd.DataFrame(columns=store.TRUTH.names)
    report: dict = {"teacher": "embedded" if gc.teacher == "embedded" else gc.teacher.model}
    with stage.llm_session("generate", generation, gc.budget) as session:
        if gc.teacher == "embedded":
            rows, truth = generate(rng, plan, generation, gate=gate, error_rate=gc.error_rate,
                                   skill_error_rates=gc.skill_error_rates)
        else:
            client = session.client(gc.teacher, "generate.teacher")
            template = templates.load(Path(cfg.domain.path) / gc.template)
            bar = stage.Progress("generate", "teacher answers", len(plan))
            if cfg.domain.name == "toolcall":
                rows, truth = label_with_model(client, template, draw(rng, plan, gate), generation, gate, bar)
            else:
                rows = write_examples(client, template, plan, pool, generation, cfg, rng, gate, bar)
            bar.close()
        calls = session.finish()
    report |= {"rows": len(rows), "teacher_errors": int((rows["error"] != "").sum()), "gate_refused": gate.refused,
               "plan_kinds": plan["kind"].value_counts().sort_index().to_dict()}
    store.write_table(rows, layout.path(generation, layout.GENERATED), store.GENERATED)
    store.write_table(truth, layout.path(generation, layout.TRUTH), store.TRUTH)
    store.write_json(report, layout.path(generation, layout.GENERATE_METRICS))
    stage.log("generate", f"{len(rows)} rows from {len(plan)} plan rows of {prev}; "
              f"{report['teacher_errors']} teacher errors; model calls {calls['calls']}, "
              f"cache hits {calls['cache_hits']}, tokens {calls['prompt_tokens'] + calls['completion_tokens']}, "
              f"{calls['seconds']}s")


if __name__ == "__main__":
    stage.run("generate", main)
