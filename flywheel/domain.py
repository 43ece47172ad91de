"""What the stages need to know about the domain's student side: the text it learns to
write for a label, its answers as text, and how they are scored. `toolcall` renders calls
and scores by AST match; `llm` learns the label text and scores by `domain.metric`
(`judge`-scored evaluation is done by tasks/evaluate.py with the committee)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pandas as pd

from flywheel.config import DomainConfig
from flywheel.llm_domain import correct as llm_correct
from flywheel.toolcall import calls as C
from flywheel.toolcall.catalog import SKILLS as TOOLCALL_SKILLS

if TYPE_CHECKING:  # torch and transformers cost ~5 s to import: only stages that run the model pay it
    from flywheel.student import Codec


def target(domain: DomainConfig, label: str) -> str:
    return C.render(C.loads(label)) if domain.name == "toolcall" else label


def skills(domain: DomainConfig, seen: pd.Series | None = None) -> list[str]:
    """Skills in report order: the domain's list, then any others the rows carry."""
    base = list(TOOLCALL_SKILLS) if domain.name == "toolcall" else list(domain.skills)
    extra = sorted({s for row in seen for s in row} - set(base)) if seen is not None else []
    return base + extra


def answers(domain: DomainConfig, model, codec: "Codec", requests: list[str], *, batch_size: int,
            max_new_tokens: int = 64, on_batch: Callable[[int], None] | None = None) -> list[str]:
    from flywheel import student

    if domain.name == "toolcall":
        toks = student.answer(model, codec, requests, batch_size=batch_size, max_new_tokens=max_new_tokens,
                              on_batch=on_batch)
        return [" ".join(t) for t in toks]
    return student.answer_text(model, codec, requests, batch_size=batch_size, max_new_tokens=max_new_tokens,
                               on_batch=on_batch)


def score(domain: DomainConfig, rows: pd.DataFrame, outputs: list[str]) -> pd.DataFrame:
    """Per-row correctness of the student's outputs against `rows.label` (`judge` metric: exact here)."""
    if domain.name == "toolcall":
        ok = [C.ast_match(C.parse(o.split()), C.loads(label)) for o, label in zip(outputs, rows["label"])]
    else:
        metric = "exact" if domain.metric == "judge" else domain.metric
        ok = [llm_correct(o, label, metric) for o, label in zip(outputs, rows["label"])]
    return pd.DataFrame({"id": rows["id"].to_numpy(), "output": outputs, "correct": ok})
