"""The `llm` domain: a user's own task, run by the same DAG as `toolcall`.

The user brings, under `domain.path`: seed and evaluation examples (JSONL or Parquet;
`input`, `output`, optional `skills` and `split`), a teacher template that writes a new
example from a reference example of a skill, a judge template and rubric, and picks a
metric in `params.yaml` (`exact`, `json` or `judge`). The student is the project's own
small model with a byte-level BPE tokenizer trained on the seed examples, so any text
can be encoded. There are no deterministic checks beyond the format: every label goes
to the judge committee.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from flywheel import decontam, layout, tables
from flywheel.domain import Domain, Prepared, Teacher, register
from flywheel.gate import Gate
from flywheel.tables import generated_row
from flywheel.backends.client import Prompt, schema_text
from flywheel.backends.committee import extract_json
from flywheel.examples import UNTAGGED, canon, read_examples
from flywheel.verdicts import JUDGE_ERROR, TEACHER_ERROR, VERDICTS

TEACHER_PARSER = "llm-teacher-v1"
def correct(output: str, label: str, metric: str) -> bool:
    if metric == "json":
        got = canon(output, "json")
        return got is not None and got == label
    return " ".join(output.split()) == " ".join(label.split())


TEACHER_SCHEMA = schema_text({"type": "object", "required": ["input", "output"],  # what parse_teacher reads
                              "properties": {"input": {"type": "string", "minLength": 1}, "output": {}}})


def parse_teacher(metric: str):
    """The parser of a teacher answer: a JSON object with a new `input` and its `output`."""
    def parse(text: str) -> tuple[str, str]:
        obj = extract_json(text)
        if not isinstance(obj, dict):
            raise ValueError("the answer is not a JSON object")
        request = obj.get("input")
        if not isinstance(request, str) or not request.strip():
            raise ValueError("'input' is missing or empty")
        label = canon(obj.get("output"), metric)
        if label is None:
            raise ValueError("'output' is missing, empty" + (" or not JSON" if metric == "json" else ""))
        return " ".join(request.split()), label
    return parse


def reference_examples(plan: pd.DataFrame, pool: pd.DataFrame, rng: random.Random) -> list[pd.Series]:
    """Per plan row, the example the teacher varies: its parent (for error_driven and
    borderline rows, the probe's row, whose student answer travels in the plan), else a pool
    row of its skill."""
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


def write_examples(client, template, plan: pd.DataFrame, pool: pd.DataFrame, generation: str, *, metric: str,
                   skills: list[str], rubric: str, rng: random.Random, gate: Gate, bar=None) -> pd.DataFrame:
    """New examples from the teacher model, one per plan row."""
    refs = reference_examples(plan, pool, rng)
    prompts = []
    for i, (plan_row, ref) in enumerate(zip(plan.itertuples(index=False), refs)):
        skill = list(plan_row.skills)[0] if len(plan_row.skills) else UNTAGGED
        prompts.append(Prompt(template.render(example_input=ref["request"], example_output=ref["label"], skill=skill,
                                              skills=skills, variation=i, rubric=rubric,
                                              student_output=plan_row.parent_output),
                              template.version, TEACHER_PARSER + metric, TEACHER_SCHEMA))
    answers = client.ask(prompts, parse_teacher(metric), on_done=bar.advance if bar else None)
    rows = []
    for plan_row, ans in zip(plan.itertuples(index=False), answers):
        if ans.error:
            rows.append(generated_row(generation, plan_row.parent_id, plan_row.skills, client.name, "", "", ans.text,
                                      ans.error, kind=plan_row.kind))
            continue
        request, label = ans.value
        if not gate.admit(request):  # a repeat of the pool or this generation, or an evaluation input
            continue
        rows.append(generated_row(generation, plan_row.parent_id, plan_row.skills, client.name, request, label,
                                  ans.text, kind=plan_row.kind))
    return tables.frame(rows, tables.GENERATED)


@register
class Llm(Domain):
    """The user's task: examples from files, a model teacher, an LLM committee as judge."""
    name = "llm"
    metrics = ("exact", "json", "judge")
    # student_output: the student's answer to the reference, for a row varied from a failure (else empty)
    teacher_variables = frozenset({"example_input", "example_output", "skill", "skills", "variation", "rubric",
                                   "student_output"})
    needs_model_teacher = True
    needs_committee = True

    @property
    def opts(self):
        """This domain's own section of params.yaml (domain.llm)."""
        return self.cfg.llm

    def _read(self, file: str, split: str) -> pd.DataFrame:
        return read_examples(self.path / file, self.label_format(), split=split)

    def prepare(self, rng, cfg, traffic_cfg) -> Prepared:
        """The user's evaluation and seed files, and a byte-level BPE tokenizer from the seed set."""
        from flywheel.vocab import train_bpe_tokenizer

        evals = self._read(self.opts.eval_file, "eval")
        seed = self._read(self.opts.seed_file, "seed")
        decontam.check_decontaminated(seed, evals, str(Path(self.cfg.path) / self.opts.seed_file))
        seed = seed.drop(columns="split").assign(generation=layout.SEED, source=tables.SEED, parent_id=None,
                                                 teacher="seed", judge="none")
        tokenizer = train_bpe_tokenizer(list(seed["request"]) + list(seed["label"]), self.opts.tokenizer_vocab)
        return Prepared(evals, seed, tokenizer)

    def check_files(self, traffic_cfg) -> None:
        for name in (self.opts.seed_file, self.opts.eval_file):
            self._read(name, "check")

    def tag_choices(self) -> list[str]:
        return list(self.opts.skills)

    def label_format(self) -> str:
        return "json" if self.cfg.metric == "json" else "exact"

    def generate(self, plan, pool, *, generation, gate, rng, teacher: Teacher, cfg, rubric, bar=None):
        rows = write_examples(teacher.client, teacher.template, plan, pool, generation, metric=self.cfg.metric,
                              skills=self.opts.skills, rubric=rubric, rng=rng, gate=gate, bar=bar)
        return rows, tables.frame([], tables.TRUTH)  # no truth: a model wrote the labels

    def target(self, label: str) -> str:
        return label

    def skills(self, seen: pd.Series | None = None) -> list[str]:
        base = list(self.opts.skills)
        extra = sorted({s for row in seen for s in row} - set(base)) if seen is not None else []
        return base + extra

    def score(self, labels: list[str], outputs: list[str]) -> list[bool]:
        """`judge`-scored evaluation is decided by the committee (tasks/evaluate.py); here it is exact."""
        metric = "exact" if self.cfg.metric == "judge" else self.cfg.metric
        return [correct(o, label, metric) for o, label in zip(outputs, labels)]

    def deployed_answer(self, output: str) -> str:
        return output

    def functions(self, label: str) -> list[str]:
        return []

    def missing(self, output: str, label: str) -> list[str]:
        return []  # no error analysis without a judge call

    def random_spec(self, rng: random.Random, skill: str) -> tuple[list[str], list[str]]:
        return [], [skill]

    def catalog(self) -> list:
        return []

    def canon(self, value) -> str | None:
        return canon(value, self.cfg.metric)

    def passes(self, label: str, request: str) -> bool:
        return True  # no checks beyond the format

    def first_verdicts(self, rows: pd.DataFrame, outputs: list[str] | None, *, use_repair: bool) -> pd.DataFrame:
        """No checks of its own: every readable label waits for the committee."""
        out = rows.copy()
        out["student_output"] = outputs if outputs is not None else ""
        out["verdict"] = [TEACHER_ERROR if e else JUDGE_ERROR for e in rows["error"]]
        out["reason"] = [e or "not judged yet" for e in rows["error"]]
        out["final_label"] = None
        out["judge"] = ""
        out["agreement"] = None
        return out

    def undecided(self, verdicts: pd.DataFrame) -> pd.Series:
        return verdicts["verdict"] != TEACHER_ERROR

    def judge_report(self, verdicts: pd.DataFrame, truth: pd.DataFrame) -> dict:
        return {"verdicts": {v: int((verdicts["verdict"] == v).sum()) for v in VERDICTS}, "rows": len(verdicts),
                "kept": int(verdicts["final_label"].notna().sum())}

    def tag_skills(self, skills: list[str], suggested: tuple[str, ...]) -> list[str]:
        """Rows the files left untagged take the committee's tags (those the domain knows)."""
        if list(skills) != [UNTAGGED]:
            return skills
        return [s for s in suggested if s in self.opts.skills] or skills
