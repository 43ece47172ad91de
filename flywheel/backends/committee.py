"""The LLM judge: structured verdicts, a committee's vote, agreement, calibration.

Each judge answers in JSON validated against `JudgeAnswer`: a verdict (`label_ok`,
`label_wrong`, `model_wrong`, `both_wrong`), a corrected label where it has one, an
error analysis and, optionally, skill tags. A committee is K answers per row (several
models, or several samples of one); the majority verdict stands only when at least
`consensus` of the K members gave it and no other verdict tied. Otherwise the row is
held out (`no_consensus`), not guessed; a row no member answered usably is
`judge_error`. Domains decide which rows reach the committee and what a valid
corrected label is (`canon`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from flywheel.backends.client import Answer, Client, Prompt, schema_text
from flywheel.verdicts import JUDGE_ERROR, NO_CONSENSUS

PARSER_VERSION = "judge-answer-v1"
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class JudgeAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    verdict: Literal["label_ok", "label_wrong", "model_wrong", "both_wrong"]
    corrected_label: Any = None
    analysis: str = ""
    skills: list[str] = []


VERDICT_SCHEMA = schema_text(JudgeAnswer.model_json_schema())  # what parse_verdict reads
MAX_ANSWER_CHARS = 200_000  # longer answers are refused, not searched (the search is quadratic)


def extract_json(text: str) -> Any:
    """The first JSON object or array in a model's answer (code fences allowed)."""
    if len(text) > MAX_ANSWER_CHARS:
        raise ValueError(f"the answer is {len(text):,} characters, more than {MAX_ANSWER_CHARS:,}")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, ch in enumerate(body):
        if ch in "{[":
            try:
                return decoder.raw_decode(body, i)[0]
            except json.JSONDecodeError:
                continue
            except RecursionError:  # "[[[[..." nested deeper than the decoder goes
                raise ValueError("the answer's JSON is nested too deeply") from None
    raise ValueError("no JSON object in the answer")


def parse_verdict(text: str) -> JudgeAnswer:
    obj = extract_json(text)
    if not isinstance(obj, dict):
        raise ValueError("the answer is not a JSON object")
    try:
        return JudgeAnswer.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc'])) or 'answer'}: {first['msg']}") from None


@dataclass(frozen=True)
class Decision:
    verdict: str
    corrected: str | None  # canonical corrected label, when the winners gave a valid one
    agreement: float  # share of the committee behind the verdict
    analysis: str = ""
    skills: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=())


def decide(answers: Sequence[Answer], consensus: float, canon: Callable[[Any], str | None]) -> Decision:
    k = len(answers)
    usable = [a.value for a in answers if not a.error]
    errors = tuple(a.error for a in answers if a.error)
    if not usable:
        return Decision(JUDGE_ERROR, None, 0.0, "; ".join(errors)[:300], errors=errors)
    votes = Counter(v.verdict for v in usable)
    (top, n), *rest = votes.most_common()
    share = n / k
    if (rest and rest[0][1] == n) or share < consensus:
        return Decision(NO_CONSENSUS, None, share, f"votes {dict(votes)}", errors=errors)
    winners = [v for v in usable if v.verdict == top]
    fixes = Counter(c for c in (canon(v.corrected_label) for v in winners if v.corrected_label is not None) if c)
    skills = tuple(sorted({s for v in winners for s in v.skills}))
    return Decision(top, fixes.most_common(1)[0][0] if fixes else None, share, winners[0].analysis[:500], skills,
                    errors)


def fleiss_kappa(ratings: Sequence[Sequence[str | None]]) -> float | None:
    """Agreement of K raters beyond chance, over rows every rater answered (None: K < 2)."""
    rows = [r for r in ratings if len(r) >= 2 and all(x is not None for x in r)]
    if not rows:
        return None
    k = len(rows[0])
    cats = sorted({x for r in rows for x in r})
    counts = [Counter(r) for r in rows]
    p_j = [sum(c[cat] for c in counts) / (len(rows) * k) for cat in cats]
    p_bar = sum((sum(n * n for n in c.values()) - k) / (k * (k - 1)) for c in counts) / len(rows)
    p_e = sum(p * p for p in p_j)
    return 1.0 if p_e == 1 else round((p_bar - p_e) / (1 - p_e), 4)


JUDGE_VARIABLES = frozenset({"request", "label", "student_output", "rubric", "catalog", "skills", "reference",
                             "conversation"})


def judge_prompt(template, *, request: str, label: str, student_output: str, rubric: str, catalog: list,
                 skills: list[str], reference: str = "", conversation: str = "") -> Prompt:
    """The judge template's variables, the same for the judge stage, calibration and
    judge-scored evaluation (where `label` is the student's answer and `reference` the
    evaluation set's); `conversation`: a logged request's turns before it ("" for none)."""
    messages = template.render(request=request, label=label, student_output=student_output, rubric=rubric,
                               catalog=catalog, skills=skills, reference=reference, conversation=conversation)
    return Prompt(messages, template.version, PARSER_VERSION, VERDICT_SCHEMA)


def ask_committee(members: Sequence[tuple[Client, int]], prompts: list[Prompt], *, consensus: float,
                  canon: Callable[[Any], str | None], on_done: Callable[[int], None] | None = None
                  ) -> tuple[list[Decision], float | None]:
    """Every (client, sample) member answers every prompt; one decision per prompt, and kappa."""
    per_member = [client.ask(prompts, parse_verdict, sample=sample, on_done=on_done) for client, sample in members]
    by_row = list(zip(*per_member)) if per_member else [() for _ in prompts]
    decisions = [decide(row, consensus, canon) for row in by_row]
    kappa = fleiss_kappa([[None if a.error else a.value.verdict for a in row] for row in by_row])
    return decisions, kappa


def flag_quality(flagged: Sequence[bool], wrong: Sequence[bool]) -> dict:
    """Precision and recall of flagging wrong labels (calibration, and the simulation's truth)."""
    tp = sum(1 for f, w in zip(flagged, wrong) if f and w)
    n_flag, n_wrong = sum(map(bool, flagged)), sum(map(bool, wrong))
    return {"rows": len(flagged), "wrong": n_wrong, "flagged": n_flag,
            "precision": round(tp / n_flag, 4) if n_flag else 1.0, "recall": round(tp / n_wrong, 4) if n_wrong else 1.0}
