"""Traffic: the requests a deployed model received (`traffic.file`), unlabelled.

The file is JSONL (one object a line) or Parquet: OpenAI chat-completions records
(`messages`, `tools`, the deployed model's `response` with `tool_calls`: records.py), or
rows with a `request` column (the text the user sent); either optionally with
`timestamp` (ISO 8601 text, or a Parquet timestamp). A record's turns before the request
and the tools it offered travel with its row (`context`); `response` (what the deployed
model answered) is kept for the user's own analysis, never sent to a teacher. Each request is redacted where it is read (flywheel/redact.py), and
every later copy holds only the redacted text. Requests that repeat one before them (after
case and spacing) are read once, and any that equals or nearly duplicates an
evaluation request is dropped (flywheel/decontam.py): the held-out `user` split stays
unseen.

Generation i labels slice i (`traffic.rows` requests): of the file in timestamp
order (`traffic.slice: time`, a nightly run's new logs) or of a shuffle seeded by
`seed` (`sample`). The slice travels to `generate` in the plan (rows of kind `traffic`,
the request in `parent_request`), so DVC versions it with the plan.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd

from flywheel import store, tables
from flywheel.decontam import EvalRequests, request_key
from flywheel.redact import Redactor
from flywheel.toolcall import calls, records

def read(path: Path, redactor: Redactor) -> pd.DataFrame:
    """id, request, context, timestamp (UTC or NaT), response: checked, redacted, distinct
    (a request that repeats one before it is read once, with the first one's context)."""
    rows, seen = [], set()
    for where, rec in store.read_records(path, "traffic.file"):
        context, response = None, rec.get("response")
        if records.is_record(rec):
            made = records.read(where, rec, redactor)
            request, context = made.request, made.context
            response = None if made.answered is None else calls.dumps(made.answered)
        else:
            request = rec.get("request")
            if not isinstance(request, str) or not request.strip():
                raise store.DataError(f"{where}: 'request' must be a non-empty string (or 'messages': a record)")
        stamp = rec.get("timestamp")
        if stamp is None or (isinstance(stamp, float) and pd.isna(stamp)):
            stamp = pd.NaT
        else:
            try:
                stamp = pd.Timestamp(stamp)
                stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            except (ValueError, TypeError):
                raise store.DataError(f"{where}: 'timestamp' {stamp!r} is not a time") from None
        if response is not None and not isinstance(response, str):
            raise store.DataError(f"{where}: 'response' must be a string")
        text = " ".join(redactor(request).split())
        key = request_key(text)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"id": tables.row_id(tables.TRAFFIC, text), "request": text, "context": context,
                     "timestamp": stamp, "response": redactor(response) if response else ""})
    if not rows:
        raise store.DataError(f"{path}: no requests")
    return pd.DataFrame(rows)


def decontaminate(traffic: pd.DataFrame, eval_requests: list[str]) -> tuple[pd.DataFrame, int]:
    """Traffic without the requests that equal or nearly duplicate an evaluation request."""
    keep = EvalRequests(eval_requests).clean(traffic["request"])
    return traffic[keep].reset_index(drop=True), int(len(keep) - sum(keep))


def take(traffic: pd.DataFrame, index: int, rows: int, order: str, seed: int) -> pd.DataFrame:
    """Slice `index` of `rows` requests, in timestamp order or of a seeded shuffle."""
    if order == "time":
        if traffic["timestamp"].isna().any():
            raise store.DataError("traffic.slice: time needs a 'timestamp' on every traffic row")
        ordered = traffic.sort_values("timestamp", kind="stable")
    else:
        positions = list(range(len(traffic)))
        random.Random(seed).shuffle(positions)
        ordered = traffic.iloc[positions]
    return ordered.iloc[index * rows:(index + 1) * rows].reset_index(drop=True)
