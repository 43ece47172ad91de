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

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel import store
from flywheel.llm.judge import extract_json

TEACHER_PARSER = "llm-teacher-v1"
UNTAGGED = "untagged"
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


def correct(output: str, label: str, metric: str) -> bool:
    if metric == "json":
        got = canon(output, "json")
        return got is not None and got == label
    return " ".join(output.split()) == " ".join(label.split())


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
    path = Path(path)
    if not path.exists():
        raise store.DataError(f"{path}: not found")
    if path.suffix == ".parquet":
        try:
            records = pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise store.DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
    else:
        records = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise store.DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise store.DataError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise store.DataError(f"{path}: line {n}: expected a JSON object")
            records.append(rec | {"_line": n})
    rows = []
    for i, rec in enumerate(records, 1):
        where = f"{path}: line {rec.get('_line', i)}" if "_line" in rec else f"{path}: row {i}"
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
        rows.append({"id": store.row_id(request, label), "request": request, "label": label,
                     "skills": _skills(rec.get("skills"), where), "split": str(rec.get("split") or split)})
    if not rows:
        raise store.DataError(f"{path}: no examples")
    df = pd.DataFrame(rows)
    dup = df["request"].duplicated()
    if dup.any():
        raise store.DataError(f"{path}: input {df.loc[dup.idxmax(), 'request'][:80]!r} appears more than once")
    return df


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
