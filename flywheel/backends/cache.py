"""The response cache: content-addressed, crash-safe, and versioned with the data.

Two layers:
- a project-wide SQLite database in WAL mode (`.llm-cache/responses.sqlite`), where each
  answer is committed the moment it arrives, so a killed stage loses at most the
  requests in flight;
- per stage and generation, `data/<gen>/<stage>_calls.parquet`: exactly the answers the
  stage used, in a stable order. DVC versions that file (a `persist` output), and the
  stage loads it into the database before asking anything, so `dvc repro` of a
  generation on a fresh clone answers from it without a network call.

The key covers everything that changes an answer: backend, model, sampling parameters,
sample index, rendered messages, and the versions of the prompt template and parser.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa

from flywheel import store

CALLS = pa.schema([pa.field("key", pa.string(), nullable=False), pa.field("model", pa.string(), nullable=False),
                   pa.field("text", pa.string(), nullable=False),
                   pa.field("prompt_tokens", pa.int64(), nullable=False),
                   pa.field("completion_tokens", pa.int64(), nullable=False)])


def key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                         "text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)")
        self.used: dict[str, tuple] = {}  # what this stage read or wrote, for its calls file

    def get(self, k: str) -> tuple[str, int, int] | None:
        with self._lock:
            row = self._db.execute("SELECT model, text, prompt_tokens, completion_tokens FROM responses WHERE key=?",
                                   (k,)).fetchone()
        if row is None:
            return None
        self.used[k] = row
        return row[1], row[2], row[3]

    def put(self, k: str, model: str, text: str, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:  # autocommit: the answer is on disk when this returns
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?)",
                             (k, model, text, prompt_tokens, completion_tokens))
        self.used[k] = (model, text, prompt_tokens, completion_tokens)

    def forget(self, k: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE key=?", (k,))
        self.used.pop(k, None)

    def load(self, calls_file: Path) -> int:
        """Import a stage's versioned calls file (if DVC restored one); returns rows read."""
        if not Path(calls_file).exists():
            return 0
        df = store.read_table(calls_file, CALLS)
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?)",
                                 list(df.itertuples(index=False, name=None)))
        return len(df)

    def save(self, calls_file: Path) -> int:
        """Write exactly the answers this stage used, sorted by key (same answers, same bytes)."""
        rows = [(k, *v) for k, v in sorted(self.used.items())]
        store.write_table(pd.DataFrame(rows, columns=CALLS.names), calls_file, CALLS)
        return len(rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
