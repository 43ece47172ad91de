"""The user's files of examples: seed, evaluation and gold sets of the `llm` domain, and
the gold set any domain's judge is calibrated on (`Domain.read_gold`).

A file is JSONL or Parquet (store.read_records) with `input`, `output` and optionally
`skills` and `split`. A label is kept in its stored form (`canon`): whitespace-normalised
text, or canonical JSON for the `json` metric.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from flywheel import store, tables

UNTAGGED = "untagged"  # the skill of an example whose file names none

# Longest input or output accepted from a user's file: far beyond what the student's
# context holds, and small enough that one runaway row cannot stall tokenizer training.
MAX_EXAMPLE_CHARS = 20_000


def canon(value, metric: str) -> str | None:
    """A label in its stored form, or None when it is not one (empty, or not JSON for `json`)."""
    if metric == "json":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):  # NaN is a missing label, not the text "nan"
        return None
    text = " ".join(str(value).split())
    return text or None


def _skills(value, where: str) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return [UNTAGGED]
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        return list(value) or [UNTAGGED]
    raise store.DataError(f"{where}: 'skills' must be a string or a list of strings")


def read_examples(path: Path, metric: str, *, split: str) -> pd.DataFrame:
    """Rows (id, request, label, skills, split) from a JSONL or Parquet file; one-line errors."""
    rows = []
    for where, rec in store.read_records(path):
        request = rec.get("input")
        if not isinstance(request, str) or not request.strip():
            raise store.DataError(f"{where}: 'input' must be a non-empty string")
        for key in ("input", "output"):
            size = len(rec[key]) if isinstance(rec.get(key), str) else 0
            if size > MAX_EXAMPLE_CHARS:
                raise store.DataError(f"{where}: '{key}' is {size:,} characters, more than the "
                                      f"{MAX_EXAMPLE_CHARS:,} an example may have")
        label = canon(rec.get("output"), metric)
        if label is None:
            raise store.DataError(f"{where}: 'output' is missing, empty" + (" or not JSON" if metric == "json" else ""))
        request = " ".join(request.split())
        rows.append({"id": tables.row_id(request, label), "request": request, "label": label,
                     "skills": _skills(rec.get("skills"), where), "split": str(rec.get("split") or split)})
    if not rows:
        raise store.DataError(f"{path}: no examples")
    df = pd.DataFrame(rows)
    dup = df["request"].duplicated()
    if dup.any():
        raise store.DataError(f"{path}: input {df.loc[dup.idxmax(), 'request'][:80]!r} appears more than once")
    return df
