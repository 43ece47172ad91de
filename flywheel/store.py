"""The one way stages read and write files: typed Parquet, JSON, CSV, directories.

Writes are atomic (a temp file in the same directory, then `os.replace`), so a killed
stage leaves the previous output or none, never half a file. Reads check the schema
and raise `DataError` with a one-line message naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

_STR = pa.string()
_SKILLS = pa.list_(pa.string())

# Lineage columns every row carries from generate to compose.
_LINEAGE = [
    pa.field("id", _STR, nullable=False),
    pa.field("generation", _STR, nullable=False),
    pa.field("source", _STR, nullable=False),  # seed / synthetic / corrected
    pa.field("parent_id", _STR),  # the failure this row was expanded from
    pa.field("skills", _SKILLS, nullable=False),
    pa.field("teacher", _STR, nullable=False),
    pa.field("request", _STR, nullable=False),
    pa.field("label", _STR, nullable=False),  # canonical JSON list of calls
]

# `raw`: the teacher model's answer as received ("" for the embedded teacher); `error`:
# why no label could be read from it ("" when there is one; `label` is then "").
GENERATED = pa.schema(_LINEAGE + [pa.field("raw", _STR, nullable=False), pa.field("error", _STR, nullable=False),
                                  pa.field("factors", _SKILLS, nullable=False),  # its composition (Domain.factors)
                                  pa.field("kept", _SKILLS, nullable=False),  # the parent's factors it kept
                                  pa.field("kind", _STR, nullable=False)])  # the plan row's strategy
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
                     pa.field("label", _STR, nullable=False), pa.field("skills", _SKILLS, nullable=False),
                     pa.field("split", _STR, nullable=False)])
PREDICTIONS = pa.schema([pa.field("id", _STR, nullable=False), pa.field("output", _STR, nullable=False),
                         pa.field("correct", pa.bool_(), nullable=False)])
PROBE = pa.schema([pa.field("id", _STR, nullable=False), pa.field("skills", _SKILLS, nullable=False),
                   pa.field("split", _STR, nullable=False),  # train (the pool) / dev (held out)
                   pa.field("output", _STR, nullable=False), pa.field("correct", pa.bool_(), nullable=False),
                   pa.field("loss", pa.float64(), nullable=False), pa.field("perplexity", pa.float64(), nullable=False),
                   pa.field("category", _STR, nullable=False),  # mastered / borderline / failed
                   pa.field("missing", _SKILLS, nullable=False),  # skills a failed answer got wrong
                   pa.field("factors", _SKILLS, nullable=False),  # what the request is made of (Domain.factors)
                   pa.field("samples", pa.int64(), nullable=False),  # sampled answers besides the greedy one
                   pa.field("success_rate", pa.float64(), nullable=False)])  # share of all its answers right
PLAN = pa.schema([pa.field("plan_id", _STR, nullable=False), pa.field("parent_id", _STR),
                  pa.field("functions", _SKILLS, nullable=False), pa.field("skills", _SKILLS, nullable=False),
                  pa.field("kind", _STR, nullable=False),
                  pa.field("keep", _SKILLS, nullable=False),  # the parent's factors a child must keep
                  # the failure the row varies: the parent's request, the student's answer, the verified label
                  pa.field("parent_request", _STR), pa.field("parent_output", _STR), pa.field("parent_label", _STR)])


def plan_row(plan_id: str, parent_id, functions, skills, kind: str, *, keep=(), parent_request=None,
             parent_output=None, parent_label=None) -> dict:
    """One row of plan.parquet (PLAN)."""
    return {"plan_id": plan_id, "parent_id": parent_id, "functions": list(functions), "skills": list(skills),
            "kind": kind, "keep": list(keep), "parent_request": parent_request, "parent_output": parent_output,
            "parent_label": parent_label}


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and the problem."""


def row_id(*parts: str) -> str:
    """Stable content hash of a row's defining text."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def request_key(text: str) -> str:
    """What makes two requests the same for dedup and decontamination: case and runs of
    whitespace do not count."""
    return " ".join(text.lower().split())


def request_keys(requests: pd.Series) -> pd.Series:
    """`request_key` of every row (a plain loop over a list: faster than pandas' string
    methods here, and the very same function the generate stage's gate applies)."""
    return pd.Series([request_key(t) for t in requests.tolist()], index=requests.index, dtype=object)


def duplicated_requests(requests: pd.Series) -> pd.Series:
    """True for every row whose `request_key` an earlier row already has. Exact, and linear
    in practice: rows are first compared by a 64-bit hash of their key (a compact table
    that stays in cache), then only rows whose hash repeats are compared by key."""
    keys = [request_key(t) for t in requests.tolist()]
    hashes = pd.Series(np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)))
    maybe = np.flatnonzero(hashes.duplicated(keep=False).to_numpy())
    out = np.zeros(len(keys), dtype=bool)
    if len(maybe):
        out[maybe] = pd.Series([keys[i] for i in maybe], dtype=object).duplicated().to_numpy()
    return pd.Series(out, index=requests.index)


def check_decontaminated(train: pd.DataFrame, evals: pd.DataFrame, where: str) -> None:
    """A training request equal (by request_key) to an evaluation request, or a
    near-duplicate of one (flywheel/decontam.py), is an error: decontamination is checked,
    not assumed (`prepare` on the seed set, `compose` on every training set)."""
    from flywheel.decontam import THRESHOLD, NearDuplicates

    eval_keys = set(request_keys(evals["request"]))
    overlap = request_keys(train["request"]).isin(eval_keys)
    if overlap.any():
        first = train.loc[overlap.idxmax()]
        raise DataError(f"{where}: {int(overlap.sum())} training request(s) equal evaluation requests, "
                        f"first id {first['id']}: {first['request']!r}")
    near = NearDuplicates(evals["request"].tolist())
    matches = [near.match(t) for t in train["request"].tolist()]
    hits = [i for i, m in enumerate(matches) if m is not None]
    if hits:
        first = train.iloc[hits[0]]
        raise DataError(f"{where}: {len(hits)} training request(s) are near-duplicates of evaluation requests "
                        f"(word 3-gram containment >= {THRESHOLD}), first id {first['id']}: {first['request']!r} "
                        f"~ {near.texts[matches[hits[0]]]!r}")


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_records(path: Path, key: str = "") -> list[tuple[str, dict]]:
    """The records of a JSONL file (one object a line; blank lines skipped) or a Parquet
    file, each with where it is (`<path>: line 7`, `<path>: row 7`) for the caller's
    one-line errors. The file's own faults are `DataError`s here: not found (naming the
    config `key` that points at it), not readable Parquet, not UTF-8, a line that is not
    JSON or not an object. The one reader of the user's example, label and log files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found" + (f" ({key})" if key else ""))
    if path.suffix.lower() == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
        return [(f"{path}: row {i}", r) for i, r in enumerate(rows, 1)]
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {n}: expected a JSON object")
        out.append((f"{path}: line {n}", rec))
    return out


def replace_block(text: str, name: str, body: str, where: str = "") -> str:
    """`text` with the generated block `name` (between `<!-- generated: name ... -->` and
    `<!-- end generated: name -->`) holding `body`; a text without the block is an error."""
    begin = re.search(rf"<!-- generated: {re.escape(name)}\b[^>]*-->\n", text)
    end = f"<!-- end generated: {name} -->"
    if begin is None or end not in text[begin.end():]:
        raise DataError(f"{where or 'text'}: no generated block {name!r} (<!-- generated: {name} --> ... {end})")
    stop = text.index(end, begin.end())
    return text[:begin.end()] + body.rstrip("\n") + "\n" + text[stop:]


def write_table(df: pd.DataFrame, path: Path, schema: pa.Schema) -> None:
    table = pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
    # No pandas metadata: the file then depends only on the rows and the schema.
    table = table.replace_schema_metadata(None)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """The columns of `schema` (only those are read), checked for presence, type and nulls.
    Pass a subset of a stage schema to read only what a step needs."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found (has the stage that writes it run?)")
    try:
        found = pq.read_schema(path)
        for field in schema:
            if field.name not in found.names:
                raise DataError(f"{path}: missing column {field.name!r}")
            actual = found.field(field.name).type
            if not actual.equals(field.type) and not (pa.types.is_large_string(actual) and field.type == _STR):
                raise DataError(f"{path}: column {field.name!r} has type {actual}, expected {field.type}")
        table = pq.read_table(path, columns=schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})") from None
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise DataError(f"{path}: column {field.name!r} has {table.column(field.name).null_count} empty values")
    return table.cast(schema).to_pandas()


def columns(schema: pa.Schema, *names: str) -> pa.Schema:
    """The part of `schema` with these columns, for `read_table`."""
    return pa.schema([schema.field(n) for n in names])


def write_json(obj: object, path: Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (has the stage that writes it run?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_file(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temp directory that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
