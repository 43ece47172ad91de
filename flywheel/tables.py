"""The tables a generation writes, defined once: each table's schema, the builders of
its rows, the names its columns hold, and the one id scheme.

A row's `id` is a content hash of what defines it (`row_id`: a request and its label,
say), so the same row has the same id in every generation and on every machine. A plan
row's `plan_id` is its place in its plan (`plan_table`): the generation that planned it
(`seed` for generation 0's plan) and its position, traffic rows included.

flywheel/store.py reads and writes these tables (schemas checked); this module only
says what they are. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

import pandas as pd
import pyarrow as pa

# -- the names the columns hold -------------------------------------------------------------

# The strategies `expand` mixes (expand.strategy), each also the `kind` of the plan rows it makes.
Strategy = Literal["error_driven", "borderline", "skill_weighted", "skill_synth", "random", "static"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
ERROR_DRIVEN, BORDERLINE_KIND, SKILL_WEIGHTED, SKILL_SYNTH, RANDOM, STATIC = STRATEGIES
TARGETED = (ERROR_DRIVEN, BORDERLINE_KIND, SKILL_WEIGHTED, SKILL_SYNTH)  # the strategies that read the probe
# The other plan kinds: generation 0's variations of the seed rows, and a logged request
# (`traffic`, which is also the source of the rows labelled from it).
SEED_VARIATION, TRAFFIC = "seed_variation", "traffic"
PLAN_KINDS = (*STRATEGIES, SEED_VARIATION, TRAFFIC)

# Where a training row comes from: the seed set, the teacher, the judge's correction, a log.
Source = Literal["seed", "synthetic", "corrected", "traffic"]
SEED, SYNTHETIC, CORRECTED, _ = get_args(Source)

# The probe's category of a row: right and sure, right but unsure, wrong.
Category = Literal["mastered", "borderline", "failed"]
MASTERED, BORDERLINE, FAILED = get_args(Category)

# -- schemas ----------------------------------------------------------------------------------

_STR = pa.string()
_LIST = pa.list_(pa.string())

# Lineage columns every row carries from generate to compose.
_LINEAGE = [
    pa.field("id", _STR, nullable=False),
    pa.field("generation", _STR, nullable=False),
    pa.field("source", _STR, nullable=False),  # Source
    pa.field("parent_id", _STR),  # the failure this row was expanded from
    pa.field("skills", _LIST, nullable=False),
    pa.field("teacher", _STR, nullable=False),
    pa.field("request", _STR, nullable=False),
    pa.field("label", _STR, nullable=False),  # canonical JSON list of calls
    # what a logged request came with (flywheel/toolcall/records.py): {"messages": the turns
    # before it, "tools": the tools it offered} as JSON; null: none (the domain's catalog)
    pa.field("context", _STR),
]

# `raw`: the teacher model's answer as received ("" for the embedded teacher); `error`:
# why no label could be read from it ("" when there is one; `label` is then "").
GENERATED = pa.schema(_LINEAGE + [pa.field("raw", _STR, nullable=False), pa.field("error", _STR, nullable=False),
                                  pa.field("factors", _LIST, nullable=False),  # its composition (Domain.factors)
                                  pa.field("kept", _LIST, nullable=False),  # the parent's factors it kept
                                  pa.field("kind", _STR, nullable=False)])  # the plan row's kind
TRUTH = pa.schema([pa.field("id", _STR, nullable=False), pa.field("true_label", _STR, nullable=False),
                   pa.field("error_kind", _STR, nullable=False)])
VERDICTS = pa.schema(list(GENERATED) + [
    pa.field("student_output", _STR, nullable=False),
    pa.field("verdict", _STR, nullable=False),
    pa.field("reason", _STR, nullable=False),
    pa.field("final_label", _STR),  # null: dropped
    pa.field("judge", _STR, nullable=False),  # embedded checks, or the committee's models
    pa.field("agreement", pa.float64()),  # share of the committee behind the verdict; null: not asked
])
TRAINSET = pa.schema(_LINEAGE + [pa.field("judge", _STR, nullable=False)])
EVALSET = pa.schema([pa.field("id", _STR, nullable=False), pa.field("request", _STR, nullable=False),
                     pa.field("label", _STR, nullable=False), pa.field("skills", _LIST, nullable=False),
                     pa.field("split", _STR, nullable=False), pa.field("context", _STR)])
PREDICTIONS = pa.schema([pa.field("id", _STR, nullable=False), pa.field("output", _STR, nullable=False),
                         pa.field("correct", pa.bool_(), nullable=False)])
PROBE = pa.schema([pa.field("id", _STR, nullable=False), pa.field("skills", _LIST, nullable=False),
                   pa.field("split", _STR, nullable=False),  # train (the pool) / dev (held out)
                   pa.field("output", _STR, nullable=False), pa.field("correct", pa.bool_(), nullable=False),
                   pa.field("loss", pa.float64(), nullable=False), pa.field("perplexity", pa.float64(), nullable=False),
                   pa.field("category", _STR, nullable=False),  # Category
                   pa.field("missing", _LIST, nullable=False),  # skills a failed answer got wrong
                   pa.field("factors", _LIST, nullable=False),  # what the request is made of (Domain.factors)
                   pa.field("samples", pa.int64(), nullable=False),  # sampled answers besides the greedy one
                   pa.field("success_rate", pa.float64(), nullable=False)])  # share of all its answers right
PLAN = pa.schema([pa.field("plan_id", _STR, nullable=False), pa.field("parent_id", _STR),
                  pa.field("functions", _LIST, nullable=False), pa.field("skills", _LIST, nullable=False),
                  pa.field("kind", _STR, nullable=False),  # PLAN_KINDS
                  pa.field("keep", _LIST, nullable=False),  # the parent's factors a child must keep
                  # the failure the row varies: the parent's request, the student's answer, the verified label
                  # (a `traffic` row: the logged request in parent_request)
                  pa.field("parent_request", _STR), pa.field("parent_output", _STR), pa.field("parent_label", _STR),
                  pa.field("context", _STR)])  # a `traffic` row: what the request came with (as in _LINEAGE)


# -- ids and builders -------------------------------------------------------------------------

def row_id(*parts: str) -> str:
    """Stable content hash of a row's defining text."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def plan_row(parent_id, functions, skills, kind: str, *, keep=(), parent_request=None, parent_output=None,
             parent_label=None, context=None) -> dict:
    """One row of a plan (PLAN) before `plan_table` numbers it."""
    return {"parent_id": parent_id, "functions": list(functions), "skills": list(skills), "kind": kind,
            "keep": list(keep), "parent_request": parent_request, "parent_output": parent_output,
            "parent_label": parent_label, "context": context}


def plan_table(rows: list[dict], generation: str) -> pd.DataFrame:
    """The plan `generation` made (`seed`: generation 0's), its rows numbered in order:
    the one place a `plan_id` is made."""
    out = pd.DataFrame(rows, columns=[n for n in PLAN.names if n != "plan_id"])
    out.insert(0, "plan_id", [row_id(generation, "plan", str(i)) for i in range(len(out))])
    return out


def generated_row(generation: str, parent_id, skills, teacher: str, request: str, label: str, raw: str = "",
                  error: str = "", *, kept=(), kind: str = "", source: str = SYNTHETIC, context=None) -> dict:
    """One row of generated.parquet (GENERATED); `kind` is the plan row's, `source`
    `synthetic` (the teacher wrote the request) or `traffic` (a user did). `generate`
    fills in its `factors`."""
    return {"id": row_id(request, label), "generation": generation, "source": source,
            "parent_id": parent_id, "skills": list(skills), "teacher": teacher, "request": request,
            "label": label, "context": context, "raw": raw, "error": error, "factors": [], "kept": list(kept),
            "kind": kind}


def context(value) -> str | None:
    """A row's `context` cell as text, or None where it has none (null, NaN, "")."""
    return value if isinstance(value, str) and value else None


def truth_row(row_id_: str, true_label: str, error_kind: str) -> dict:
    """One row of truth.parquet (TRUTH): the true label of a generated row, and what kind
    of mistake the teacher made ("" for none)."""
    return {"id": row_id_, "true_label": true_label, "error_kind": error_kind}


def frame(rows: list[dict], schema: pa.Schema) -> pd.DataFrame:
    """Rows as a table with `schema`'s columns (an empty one too)."""
    return pd.DataFrame(rows, columns=schema.names)
