"""Traffic: the requests a deployed model received (`domain.traffic`), unlabelled.

The file is JSONL (one object a line) or Parquet, with a `request` column (the text the
user sent) and optionally `timestamp` (ISO 8601 text, or a Parquet timestamp) and
`response` (what the deployed model answered; kept for the user's own analysis, never
sent to a teacher). Each request is redacted where it is read (flywheel/redact.py), and
every later copy holds only the redacted text. Requests that repeat one before them (after
case and spacing) are read once, and any that equals or nearly duplicates an
evaluation request is dropped (flywheel/decontam.py): the held-out `user` split stays
unseen.

Generation i labels slice i (`domain.traffic_rows` requests): of the file in timestamp
order (`traffic_slice: time`, a nightly run's new logs) or of a shuffle seeded by
`seed` (`sample`). The slice travels to `generate` in the plan (rows of kind `traffic`,
the request in `parent_request`), so DVC versions it with the plan.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from flywheel import store
from flywheel.decontam import NearDuplicates
from flywheel.redact import Redactor

KIND = "traffic"  # the plan kind and the training rows' source


def read(path: Path, redactor: Redactor) -> pd.DataFrame:
    """id, request, timestamp (UTC or NaT), response: checked, redacted, distinct."""
    path = Path(path)
    if not path.is_file():
        raise store.DataError(f"{path}: not found (domain.traffic)")
    if path.suffix.lower() == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 (pyarrow raises several kinds)
            raise store.DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
        records, where = df.to_dict("records"), "row"
    else:
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise store.DataError(f"{path}: not UTF-8 (byte {exc.start})") from None
        records, where = [], "line"
        for n, line in enumerate(lines, 1):
            if not line.strip():
                records.append(None)
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise store.DataError(f"{path}: line {n}: not valid JSON") from None
            if not isinstance(rec, dict):
                raise store.DataError(f"{path}: line {n}: not an object with a 'request'")
            records.append(rec)
    rows, seen = [], set()
    for n, rec in enumerate(records, 1):
        if rec is None:
            continue
        request = rec.get("request")
        if not isinstance(request, str) or not request.strip():
            raise store.DataError(f"{path}: {where} {n}: 'request' must be a non-empty string")
        stamp = rec.get("timestamp")
        if stamp is None or (isinstance(stamp, float) and pd.isna(stamp)):
            stamp = pd.NaT
        else:
            try:
                stamp = pd.Timestamp(stamp)
                stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
            except (ValueError, TypeError):
                raise store.DataError(f"{path}: {where} {n}: 'timestamp' {stamp!r} is not a time") from None
        response = rec.get("response")
        if response is not None and not isinstance(response, str):
            raise store.DataError(f"{path}: {where} {n}: 'response' must be a string")
        text = " ".join(redactor(request).split())
        key = store.request_key(text)
        if key in seen:
            continue
        seen.add(key)
        rows.append({"id": store.row_id(KIND, text), "request": text, "timestamp": stamp,
                     "response": redactor(response) if response else ""})
    if not rows:
        raise store.DataError(f"{path}: no requests")
    return pd.DataFrame(rows)


def decontaminate(traffic: pd.DataFrame, eval_requests: list[str]) -> tuple[pd.DataFrame, int]:
    """Traffic without the requests that equal or nearly duplicate an evaluation request."""
    exact = set(store.request_keys(pd.Series(eval_requests)))
    near = NearDuplicates(sorted(eval_requests))
    keep = [store.request_key(t) not in exact and near.match(t) is None for t in traffic["request"]]
    return traffic[keep].reset_index(drop=True), int(len(keep) - sum(keep))


def take(traffic: pd.DataFrame, index: int, rows: int, order: str, seed: int) -> pd.DataFrame:
    """Slice `index` of `rows` requests, in timestamp order or of a seeded shuffle."""
    if order == "time":
        if traffic["timestamp"].isna().any():
            raise store.DataError("domain.traffic_slice: time needs a 'timestamp' on every traffic row")
        ordered = traffic.sort_values("timestamp", kind="stable")
    else:
        positions = list(range(len(traffic)))
        random.Random(seed).shuffle(positions)
        ordered = traffic.iloc[positions]
    return ordered.iloc[index * rows:(index + 1) * rows].reset_index(drop=True)
