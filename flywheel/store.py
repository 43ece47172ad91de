"""The one way stages read and write files: typed Parquet, JSON, CSV, directories.

Writes are atomic (a temp file in the same directory, then `os.replace`), so a killed
stage leaves the previous output or none, never half a file. Reads check the schema (the
tables' schemas are in flywheel/tables.py) and raise `DataError` with a one-line message
naming the file and what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.errors import FlywheelError


class DataError(FlywheelError, ValueError):
    """Bad input data; the message is one line naming the file and the problem."""


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
    """`df` as Parquet with `schema` (a nullable column `df` lacks is written as nulls)."""
    absent = {f.name: None for f in schema if f.nullable and f.name not in df.columns}
    table = pa.Table.from_pandas(df.assign(**absent)[schema.names], schema=schema, preserve_index=False)
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
            if not actual.equals(field.type) and not (pa.types.is_large_string(actual) and field.type == pa.string()):
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
